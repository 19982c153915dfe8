"""The metrics agree with the pool whatever was done to it (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexlab.core.errors import FlexlabError
from flexlab.core.metrics import Family, MetricLimits, MetricsRecorder, collect
from flexlab.core.metrics.pool import OTHER_OWNER
from flexlab.core.pool import SlicePool
from flexlab.core.request import parse_request
from flexlab.core.topology import PROFILE, DeviceSpec, HostSpec

GIB = 1024
HOSTS = (
    HostSpec("gpu-a", 8_000, 32 * GIB, (DeviceSpec("t4", 0), DeviceSpec("t4", 1))),
    HostSpec(
        "mig-b", 16_000, 64 * GIB, (DeviceSpec("v100s-32gb", 0), DeviceSpec("a100-80gb", 1, mode=PROFILE))
    ),
    HostSpec("npu-c", 16_000, 64 * GIB, (DeviceSpec("ascend-910b3", 0),)),
)
REQUESTS = [
    "gpu:0.25",
    "gpu:0.5",
    "t4:1.0",
    "v100s:0.5",
    "a100:1g.10gb",
    "a100:3g.40gb",
    "npu:0.5",
    "gpu:0.1",
]
OWNERS = ["ann", "ben", "cy", "di"]

op = st.one_of(
    st.tuples(st.just("lease"), st.sampled_from(REQUESTS), st.sampled_from(OWNERS)),
    st.tuples(st.just("task"), st.sampled_from(REQUESTS), st.integers(0, 30)),
    st.tuples(st.just("finish"), st.integers(0, 30), st.none()),
    st.tuples(st.just("ready"), st.integers(0, 40), st.none()),
    st.tuples(st.just("release"), st.integers(0, 40), st.none()),
    st.tuples(st.just("telemetry"), st.integers(0, 40), st.floats(0, 1)),
    st.tuples(st.just("leave"), st.sampled_from([h.name for h in HOSTS]), st.none()),
)


def _by(fams: list[Family], name: str) -> list[tuple[dict[str, str], float]]:
    (f,) = [x for x in fams if x.name == name]
    return [(dict(zip(f.labels, lab, strict=True)), float(v)) for lab, v in f.samples]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=30), carve=st.booleans(), owners=st.integers(1, 5))
def test_metrics_agree_with_the_pool(ops: list[tuple[str, object, object]], carve: bool, owners: int) -> None:
    pool = SlicePool(policy="firstfit", carve_on_register=carve)
    for h in HOSTS:
        pool.register_host(h)
    rec = MetricsRecorder(started=0.0)
    for i, (kind, a, b) in enumerate(ops):
        sids = sorted(pool.slices)
        lids = sorted(pool.leases)
        try:
            if kind == "lease":
                pool.create_lease(parse_request(str(a)), owner=str(b), ttl_s=3600)
            elif kind == "task":
                pool.bind(f"t{b}-{i}", parse_request(str(a)))
            elif kind == "finish" and pool.task_slice:
                pool.task_finished(sorted(pool.task_slice, key=str)[int(a) % len(pool.task_slice)])
            elif kind == "ready" and sids:
                pool.slice_ready(sids[int(a) % len(sids)], f"tcp://w{i}")
            elif kind == "release" and lids:
                pool.release_lease(lids[int(a) % len(lids)], None)
            elif kind == "telemetry" and sids:
                pool.telemetry(sids[int(a) % len(sids)], utilisation=float(b), memory_used_mib=512)
            elif kind == "leave" and str(a) in pool.ledger.hosts:
                pool.unregister_host(str(a))
        except FlexlabError:
            pass  # refused requests (can never fit): the metrics must agree all the same
        rec.observe(pool, float(i))
    fams = collect(pool, rec, now=float(len(ops)), limits=MetricLimits(max_owners=owners))
    for labels, v in _by(fams, "flexlab_device_compute_allocated"):
        assert -1e-9 <= v <= 1 + 1e-9, labels
    for labels, v in _by(fams, "flexlab_device_compute_used"):
        assert 0 <= v <= 1, labels
    assert len(_by(fams, "flexlab_device_compute_capacity")) == pool.ledger.pool.n_devices
    held = 0.0
    for lease in pool.leases.values():
        s = pool.slices.get(lease.slice_id or "")
        if s is not None and lease.state not in ("released", "expired"):
            held += s.compute_milli * len(s.devices) / 1000
    leased = _by(fams, "flexlab_owner_compute_leased")
    assert sum(v for _, v in leased) == pytest.approx(held)
    assert len({lab["owner"] for lab, _ in leased} - {OTHER_OWNER}) <= owners
    assert sum(v for _, v in _by(fams, "flexlab_leases")) == len(pool.leases)
    assert sum(v for _, v in _by(fams, "flexlab_owner_leases")) == len(pool.leases)
    waiting = _by(fams, "flexlab_waiting_work")
    assert sum(v for lab, v in waiting if lab["kind"] == "task") == len(pool.pending)
    assert sum(v for lab, v in waiting if lab["kind"] == "lease") == sum(
        1 for x in pool.leases.values() if x.state in ("pending", "recovering")
    )
    idle = {(lab["vendor"], lab["model"]): v for lab, v in _by(fams, "flexlab_compute_idle")}
    for lab, v in _by(fams, "flexlab_compute_stranded"):
        assert 0 <= v <= idle[(lab["vendor"], lab["model"])] + 1e-9
