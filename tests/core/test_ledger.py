"""The ledger's invariants, by example and by random sequences (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from flexlab.core.errors import FlexlabError, InvalidRequest, LedgerConflict, UnknownName
from flexlab.core.ledger import Ledger
from flexlab.core.topology import DeviceSpec, HostSpec

A100 = "nvidia-b/a100-80gb#0"
V100S = "nvidia-b/v100s-32gb#0"
NPU0 = "ascend-a/ascend-910b3#0"
NPU1 = "ascend-a/ascend-910b3#1"


def mixed_pool() -> Ledger:
    return Ledger(
        [
            HostSpec(
                "nvidia-b",
                32_000,
                128 * 1024,
                (DeviceSpec("v100s-32gb"), DeviceSpec("a100-80gb", mode="profile")),
            ),
            HostSpec(
                "ascend-a",
                64_000,
                256 * 1024,
                (DeviceSpec("ascend-910b3", 0), DeviceSpec("ascend-910b3", 1, mode="profile")),
            ),
        ]
    )


def state(ledger: Ledger) -> tuple[object, ...]:
    p = ledger.pool
    return (
        p.dev_compute_free.tolist(),
        p.dev_mem_free.tolist(),
        p.host_cpu_free.tolist(),
        p.host_mem_free.tolist(),
        dict(p.profile_free),
        sorted(a.alloc_id for a in ledger.allocations()),
    )


def test_fraction_memory_defaults_to_the_same_share() -> None:
    led = mixed_pool()
    a = led.reserve(host="nvidia-b", devices=[V100S], compute_milli=250)
    assert a.slices[0].memory_mib == 8192  # a quarter of 32 GiB
    assert int(led.pool.dev_compute_free[led.device_index(V100S)]) == 750


def test_npu_rounds_up_to_ten_percent_steps() -> None:
    led = mixed_pool()
    a = led.reserve(host="ascend-a", devices=[NPU0], compute_milli=250, memory_mib=16384)
    assert (a.slices[0].compute_milli, a.slices[0].memory_mib) == (300, 16384)


def test_mig_layout_rules() -> None:
    led = mixed_pool()
    first = led.reserve(host="nvidia-b", devices=[A100], profile="3g.40gb")
    # Placed at slice 4 so that 4g.40gb still fits at 0 (NVIDIA's placement rules).
    assert first.slices[0].start == 4
    assert led.pool.profile_free[led.device_index(A100)] == {
        "1g.10gb",
        "1g.20gb",
        "2g.20gb",
        "3g.40gb",
        "4g.40gb",
    }
    led.reserve(host="nvidia-b", devices=[A100], profile="4g.40gb")
    assert led.pool.profile_free[led.device_index(A100)] == frozenset()
    with pytest.raises(LedgerConflict, match=r"1g\.10gb"):
        led.reserve(host="nvidia-b", devices=[A100], profile="1g.10gb")
    led.check_invariants()


def test_mixed_mig_layout_fits_whatever_the_order() -> None:
    led = mixed_pool()
    for prof in ("3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"):
        led.reserve(host="nvidia-b", devices=[A100], profile=prof)
    assert sorted(p for p, _ in led.layout(A100)) == ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]
    led.check_invariants()


def test_vnpu_templates_add_up() -> None:
    led = mixed_pool()
    for _ in range(4):
        led.reserve(host="ascend-a", devices=[NPU1], profile="vir05_1c_16g")
    with pytest.raises(LedgerConflict):
        led.reserve(host="ascend-a", devices=[NPU1], profile="vir05_1c_16g")
    assert int(led.pool.dev_mem_free[led.device_index(NPU1)]) == 0


def test_profiles_only_on_profile_devices_and_back() -> None:
    led = mixed_pool()
    with pytest.raises(LedgerConflict, match="fraction-sliced"):
        led.reserve(host="nvidia-b", devices=[V100S], profile="1g.10gb")
    with pytest.raises(LedgerConflict, match="profile-sliced"):
        led.reserve(host="nvidia-b", devices=[A100], compute_milli=300)
    whole = led.reserve(host="nvidia-b", devices=[A100])
    assert led.pool.profile_free[led.device_index(A100)] == frozenset()
    led.release(whole.alloc_id)
    assert "7g.80gb" in led.pool.profile_free[led.device_index(A100)]


def test_multi_device_is_all_or_nothing() -> None:
    led = mixed_pool()
    led.reserve(host="ascend-a", devices=[NPU0], compute_milli=100)
    before = state(led)
    with pytest.raises(LedgerConflict):
        led.reserve(host="ascend-a", devices=[NPU1, NPU0])
    assert state(led) == before


def test_host_cpu_and_ram_are_reserved() -> None:
    led = mixed_pool()
    led.reserve(host="nvidia-b", devices=[], compute_milli=0, host_cpu_milli=30_000, host_memory_mib=1024)
    with pytest.raises(LedgerConflict, match="CPU"):
        led.reserve(host="nvidia-b", devices=[V100S], compute_milli=100, host_cpu_milli=4000)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"host": "nope", "devices": [V100S]}, UnknownName),
        ({"host": "nvidia-b", "devices": ["nvidia-b/t4#9"]}, UnknownName),
        ({"host": "nvidia-b", "devices": [NPU0]}, InvalidRequest),
        ({"host": "nvidia-b", "devices": [V100S], "compute_milli": 1200}, InvalidRequest),
        ({"host": "nvidia-b", "devices": [V100S], "memory_mib": -1}, InvalidRequest),
        ({"host": "nvidia-b", "devices": [V100S, V100S]}, InvalidRequest),
        ({"host": "nvidia-b", "devices": [A100], "profile": "vir05_1c_16g"}, UnknownName),
        (
            {"host": "nvidia-b", "devices": [V100S], "memory_mib": 40_000, "compute_milli": 100},
            LedgerConflict,
        ),
    ],
    ids=[
        "unknown-host",
        "unknown-device",
        "device-of-other-host",
        "compute>1",
        "negative-memory",
        "duplicate-device",
        "profile-model-lacks",
        "memory-over-device",
    ],
)
def test_bad_reservations_change_nothing(kwargs: dict[str, object], error: type[Exception]) -> None:
    led = mixed_pool()
    led.reserve(host="nvidia-b", devices=[V100S], compute_milli=200)
    before = state(led)
    with pytest.raises(error):
        led.reserve(**kwargs)  # type: ignore[arg-type]
    assert state(led) == before
    led.check_invariants()


def test_release_is_idempotent() -> None:
    led = mixed_pool()
    a = led.reserve(host="nvidia-b", devices=[V100S], compute_milli=500)
    assert led.release(a.alloc_id) == a
    assert led.release(a.alloc_id) is None
    assert led.release("never-existed") is None
    assert int(led.pool.dev_compute_free[led.device_index(V100S)]) == 1000


def test_remove_host_releases_and_add_host_keeps() -> None:
    led = mixed_pool()
    a = led.reserve(host="nvidia-b", devices=[V100S], compute_milli=500)
    led.add_host(HostSpec("mixed-c", 16_000, 64 * 1024, (DeviceSpec("t4"), DeviceSpec("mlu370-x8"))))
    assert a.alloc_id in led
    assert int(led.pool.dev_compute_free[led.device_index(V100S)]) == 500
    dropped = led.remove_host("nvidia-b")
    assert [d.alloc_id for d in dropped] == [a.alloc_id]
    assert "nvidia-b" not in led.hosts
    led.check_invariants()


def test_a_host_registered_again_is_checked_against_its_own_allocations() -> None:
    """Regression: allocations on other hosts counted as held on devices the new spec drops."""
    led = mixed_pool()
    a = led.reserve(host="nvidia-b", devices=[V100S], compute_milli=500)
    b = led.reserve(host="ascend-a", devices=[NPU0], compute_milli=300)
    led.add_host(led.hosts["ascend-a"])
    assert a.alloc_id in led
    assert b.alloc_id in led
    smaller = HostSpec("ascend-a", 64_000, 256 * 1024, (DeviceSpec("ascend-910b3", 1, mode="profile"),))
    with pytest.raises(LedgerConflict, match=rf"drops devices held by \['{b.alloc_id}'\]"):
        led.add_host(smaller)
    led.check_invariants()


def test_pool_without_is_a_release_on_a_copy() -> None:
    led = mixed_pool()
    led.reserve(host="nvidia-b", devices=[A100], profile="3g.40gb")
    big = led.reserve(host="nvidia-b", devices=[A100], profile="4g.40gb", host_cpu_milli=2000)
    before = state(led)
    copy = led.pool_without([big.alloc_id, "never-existed"])
    assert state(led) == before  # the ledger did not change
    assert copy.profile_free[led.device_index(A100)] == {
        "1g.10gb",
        "1g.20gb",
        "2g.20gb",
        "3g.40gb",
        "4g.40gb",
    }
    led.release(big.alloc_id)
    assert state(led)[:5] == (
        copy.dev_compute_free.tolist(),
        copy.dev_mem_free.tolist(),
        copy.host_cpu_free.tolist(),
        copy.host_mem_free.tolist(),
        dict(copy.profile_free),
    )


def test_a_released_allocation_is_reinstated_as_it_was() -> None:
    """Each device as it was: two whole devices of one host hold different memory
    (regression: restoring took the first device's size for all and failed)."""
    led = mixed_pool()
    both = led.reserve(host="nvidia-b", devices=[A100, V100S])
    mig = led.reserve(host="ascend-a", devices=[NPU1], profile="vir05_1c_16g")
    assert [g.memory_mib for g in both.slices] == [81920, 32768]
    before = state(led)
    for a in (both, mig):
        led.release(a.alloc_id)
        assert led.reinstate(a) is a
    assert state(led) == before
    with pytest.raises(LedgerConflict, match="already in use"):
        led.reinstate(both)
    led.release(both.alloc_id)
    led.reserve(host="nvidia-b", devices=[V100S], compute_milli=100)
    with pytest.raises(LedgerConflict):
        led.reinstate(both)
    assert both.alloc_id not in led
    led.check_invariants()


# ------------------------------------------------------------------ random sequences
DEVICES = [A100, V100S, NPU0, NPU1]
HOST_OF = {A100: "nvidia-b", V100S: "nvidia-b", NPU0: "ascend-a", NPU1: "ascend-a"}
PROFILES = ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb", "vir05_1c_16g", "vir10_3c_32g"]


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = mixed_pool()
        self.live: list[str] = []
        self.released: list[str] = []

    @rule(
        dev=st.sampled_from(DEVICES),
        compute=st.integers(1, 1000),
        memory=st.integers(0, 40_000),
        cpu=st.integers(0, 8000),
    )
    def reserve_fraction(self, dev: str, compute: int, memory: int, cpu: int) -> None:
        self._try(
            host=HOST_OF[dev], devices=[dev], compute_milli=compute, memory_mib=memory, host_cpu_milli=cpu
        )

    @rule(dev=st.sampled_from(DEVICES), profile=st.sampled_from(PROFILES))
    def reserve_profile(self, dev: str, profile: str) -> None:
        self._try(host=HOST_OF[dev], devices=[dev], profile=profile)

    @rule(devs=st.sampled_from([[V100S, A100], [NPU0, NPU1], [NPU1]]))
    def reserve_whole(self, devs: list[str]) -> None:
        self._try(host=HOST_OF[devs[0]], devices=devs)

    @rule(data=st.data())
    def bad_request(self, data: st.DataObject) -> None:
        kwargs = data.draw(
            st.sampled_from(
                [
                    {"host": "nvidia-b", "devices": [V100S], "compute_milli": 1001},
                    {"host": "nvidia-b", "devices": [V100S], "memory_mib": -5},
                    {"host": "ghost", "devices": []},
                    {"host": "ascend-a", "devices": [V100S]},
                    {"host": "nvidia-b", "devices": [A100], "profile": "vir99"},
                ]
            )
        )
        before = state(self.ledger)
        with pytest.raises(FlexlabError):
            self.ledger.reserve(**kwargs)
        assert state(self.ledger) == before

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        pool = self.live + self.released + ["unknown"]
        aid = data.draw(st.sampled_from(pool))
        was_live = aid in self.live
        out = self.ledger.release(aid)
        assert (out is not None) == was_live
        if was_live:
            self.live.remove(aid)
            self.released.append(aid)

    def _try(self, **kwargs: object) -> None:
        before = state(self.ledger)
        try:
            a = self.ledger.reserve(**kwargs)  # type: ignore[arg-type]
        except (LedgerConflict, InvalidRequest, UnknownName):
            assert state(self.ledger) == before
        else:
            self.live.append(a.alloc_id)

    @invariant()
    def never_over_committed(self) -> None:
        p = self.ledger.pool
        assert (p.dev_compute_free >= 0).all()
        assert (p.dev_compute_free <= 1000).all()
        assert (p.dev_mem_free >= 0).all()
        assert np.all(p.dev_mem_free <= p.dev_mem_total)
        assert (p.host_cpu_free >= 0).all()
        assert (p.host_mem_free >= 0).all()
        self.ledger.check_invariants()


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
