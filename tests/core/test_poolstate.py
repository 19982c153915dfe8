"""The typed pool state (``flexlab/core/poolstate/``): its wire JSON, the checks on a
malformed payload, and the device menu computed from the pool."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from flexlab.core.poolstate import (
    DeviceState,
    HostState,
    LeaseView,
    MalformedPoolState,
    PoolState,
    SliceState,
    device_menu,
    from_json,
    to_json,
)

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "tests" / "dashboard" / "data" / "pool_telemetry.json"


@pytest.fixture
def wire() -> dict[str, Any]:
    """The wire JSON of a state recorded from a running pool."""
    state: dict[str, Any] = json.loads(RECORDED.read_text())["state"]
    return state


def test_the_recorded_state_reads_back_to_the_same_json(wire: dict[str, Any]) -> None:
    state = PoolState.from_json(wire)
    out = json.loads(json.dumps(state.to_json()))  # plain JSON, nothing else in it
    # everything the recording holds comes back as it was; fields it predates come with their
    # defaults (the slice's policy, a lease's preemptions), the menu is computed
    wire.pop("status")
    _assert_within(wire, out, "")
    assert out["hosts"][0]["devices"][0]["slices"][0]["load_milli"] == 0
    assert PoolState.from_json(out) == state
    assert [c["value"] for c in out["menu"]][:4] == ["any", "gpu", "mlu", "npu"]


def _assert_within(sent: Any, back: Any, path: str) -> None:
    """``sent`` is in ``back``: the same values, where ``back``'s objects may have more keys."""
    if isinstance(sent, dict):
        assert isinstance(back, dict), path
        for k, v in sent.items():
            assert k in back, f"{path}.{k} lost"
            _assert_within(v, back[k], f"{path}.{k}")
    elif isinstance(sent, list):
        assert isinstance(back, list), path
        assert len(sent) == len(back), path
        for i, (a, b) in enumerate(zip(sent, back, strict=True)):
            _assert_within(a, b, f"{path}[{i}]")
    else:
        assert sent == back, path


def test_typed_fields(wire: dict[str, Any]) -> None:
    state = PoolState.from_json(wire)
    [alice] = [le for le in state.leases if le.owner == "alice"]
    assert isinstance(alice, LeaseView)
    assert (alice.state, alice.shape, alice.live) == ("active", "vir05_1c_16g", True)
    assert [le.lease_id for le in state.pending_leases] == ["L3"]
    assert state.policy_name == "binpack"  # the recording's scheduler had no policy section
    assert all(isinstance(d, DeviceState) for _, d in state.devices())
    assert sum(1 for _ in state.slices()) == sum(len(d.slices) for _, d in state.devices()) > 0


def _edit(wire: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(wire)
    *parents, last = path.split("/")
    node: Any = out
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DROP:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return out


_DROP = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("time", "noon", "time: expected a number, got 'noon' (str)"),
        ("hosts", {}, "hosts: expected a list, got {} (dict)"),
        (
            "hosts/0/devices/1/utilisation",
            None,
            "hosts[0].devices[1].utilisation: expected a number, got None",
        ),
        (
            "hosts/0/devices/0/schedulable",
            1,
            "hosts[0].devices[0].schedulable: expected true or false, got 1",
        ),
        ("hosts/1/cpu_milli", True, "hosts[1].cpu_milli: expected an integer, got True (bool)"),
        ("hosts/1/cpu_milli", 2.5, "hosts[1].cpu_milli: expected an integer, got 2.5 (float)"),
        ("hosts/0/devices/0/slices/0/slice_id", _DROP, "slice_id: expected a value: the field is required"),
        ("leases/0/state", "gone", "leases[0].state: expected one of pending, active, recovering, released"),
        ("leases/0/devices", "h/t4#0", "leases[0].devices: expected a list, got 'h/t4#0' (str)"),
        ("plugin/stats", {"bound": "3"}, "plugin.stats.bound: expected an integer, got '3' (str)"),
        ("events/0", [1, 2], "events[0]: expected an object (PoolEvent), got [1, 2] (list)"),
    ],
    ids=[
        "time",
        "hosts",
        "nested-number",
        "bool",
        "bool-not-int",
        "float-not-int",
        "missing",
        "literal",
        "list",
        "dict-values",
        "object",
    ],
)
def test_a_malformed_payload_names_what_is_wrong(
    wire: dict[str, Any], path: str, value: Any, message: str
) -> None:
    bad = _edit(wire, path, value)
    with pytest.raises(MalformedPoolState) as exc:
        PoolState.from_json(bad)
    assert message in str(exc.value)
    assert str(exc.value).startswith("pool state: ")


def test_not_an_object_at_all() -> None:
    with pytest.raises(MalformedPoolState, match=r"the payload: expected an object \(PoolState\), got \[\]"):
        PoolState.from_json([])


def test_optional_sections_may_be_absent_and_unknown_keys_are_ignored(wire: dict[str, Any]) -> None:
    for key in ("leases", "events", "waiting", "policy", "plugin"):
        wire.pop(key, None)
    wire["a_newer_field"] = {"x": 1}
    wire["hosts"][0]["devices"][0]["slices"][0].pop("warm_for", None)
    state = PoolState.from_json(wire)
    assert (state.leases, state.events, state.waiting, state.plugin, state.hi) == ((), (), (), None, None)
    assert state.policy_name == "?"
    assert "a_newer_field" not in state.to_json()


def test_the_speed_table_keeps_its_wire_name() -> None:
    hi = {
        "enabled": True,
        "bucket_s": 5,
        "horizon": 3,
        "speed": [{"class": "train", "model": "t4", "rate": 0.5}],
    }
    state = PoolState.from_json({"time": 0, "hosts": [], "hi": hi})
    assert state.hi is not None
    assert state.hi.speed[0].task_class == "train"
    assert to_json(state.hi)["speed"] == [{"class": "train", "model": "t4", "rate": 0.5, "samples": 0}]


def _device(did: str, model: str, vendor: str, kind: str, mode: str, **kw: Any) -> DeviceState:
    base: dict[str, Any] = {
        "id": did,
        "vendor": vendor,
        "model": model,
        "name": kw.pop("name", model.upper()),
        "kind": kind,
        "index": 0,
        "mode": mode,
        "memory_mib": kw.pop("memory_mib", 16384),
        "free_compute_milli": 1000,
        "free_memory_mib": 16384,
        "schedulable": True,
        "utilisation": 0.0,
        "memory_used_mib": 0,
        "granularity_milli": kw.pop("granularity_milli", 10),
        "profiles": kw.pop("profiles", ()),
        "free_profiles": (),
        "slices": (),
    }
    return DeviceState(**base)


def test_the_device_menu() -> None:
    hosts = (
        HostState(
            "h",
            "",
            0,
            0,
            0,
            0,
            (
                _device(
                    "h/a100#0",
                    "a100",
                    "nvidia",
                    "gpu",
                    "profile",
                    profiles=("3g.40gb", "1g.10gb"),
                    memory_mib=81920,
                ),
                _device("h/t4#0", "t4", "nvidia", "gpu", "fraction", granularity_milli=50),
                _device(
                    "h/910b#0", "910b", "huawei", "npu", "fraction", granularity_milli=100, name="Ascend 910B"
                ),
                _device(
                    "h/910b#1",
                    "910b",
                    "huawei",
                    "npu",
                    "profile",
                    profiles=("vir05_1c_16g",),
                    name="Ascend 910B",
                ),
            ),
        ),
    )
    menu = {c.value: c for c in device_menu(hosts)}
    assert [(c.value, c.label, c.group) for c in device_menu(hosts)] == [
        ("any", "Any accelerator (4)", "any"),
        ("gpu", "Any GPU (2)", "kind"),
        ("npu", "Any NPU (2)", "kind"),
        ("huawei", "Huawei (2)", "vendor"),
        ("nvidia", "NVIDIA (2)", "vendor"),
        ("910b", "Ascend 910B (2)", "model"),
        ("a100", "A100 (1)", "model"),
        ("t4", "T4 (1)", "model"),
    ]
    # shares in the coarsest step of the fraction devices; the profiles of the profile ones
    assert (menu["any"].share, menu["any"].share_step_milli) == (True, 100)
    assert menu["any"].profiles == ("3g.40gb", "1g.10gb", "vir05_1c_16g")
    assert menu["any"].max_memory_mib == 81920
    assert (menu["a100"].share, menu["a100"].profiles) == (False, ("3g.40gb", "1g.10gb"))
    assert (menu["t4"].share_step_milli, menu["t4"].profiles) == (50, ())
    assert menu["910b"].devices == ("h/910b#0", "h/910b#1")
    # a state built without a menu computes this one; one that carries a menu keeps it
    assert PoolState(time=0.0, hosts=hosts).menu == device_menu(hosts)
    assert from_json(SliceState, to_json(_slice())) == _slice()


def _slice() -> SliceState:
    return SliceState("s1", 500, 8192, None, "L1", "ana", "ready", 1, 0.5, 100, policy="flexlab")


def test_docs_wire_lists_every_field_of_every_class() -> None:
    """``docs/wire.md`` has a table per class with its wire fields, in order."""
    import dataclasses
    import re

    from flexlab.core import poolstate

    text = (ROOT / "docs" / "wire.md").read_text()
    sections = dict(re.findall(r"^### (\w+)\n(.*?)(?=^### |\Z)", text, re.S | re.M))
    classes = {
        n: c for n, c in vars(poolstate).items() if isinstance(c, type) and dataclasses.is_dataclass(c)
    }
    assert set(sections) == set(classes)
    for name, cls in classes.items():
        documented = re.findall(r"^\| `(\w+)` \|", sections[name], re.M)
        wire = [f.metadata.get("wire", f.name) for f in dataclasses.fields(cls)]
        assert documented == wire, f"docs/wire.md, {name}"
