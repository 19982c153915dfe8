from __future__ import annotations

import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.core.request import Selector, SliceRequest, parse_request

PARSE_CASES = [
    # spec, kinds, models, compute, memory, profile, devices, cpu, ram
    ("gpu:0.25", {"gpu"}, set(), 250, 0, None, 1, 0, 0),
    ("npu:25%,16GiB", {"npu"}, set(), 250, 16384, None, 1, 0, 0),
    ("ascend910b3:vir05_1c_16g", set(), {"ascend-910b3"}, 0, 0, "vir05_1c_16g", 1, 0, 0),
    ("a100:1g.10gb", set(), {"a100-40gb", "a100-80gb"}, 0, 0, "1g.10gb", 1, 0, 0),
    ("a100-80gb:3g.40gb", set(), {"a100-80gb"}, 0, 0, "3g.40gb", 1, 0, 0),
    ("any:0.5", set(), set(), 500, 0, None, 1, 0, 0),
    ("GPU: 0.5 , 8 GiB", {"gpu"}, set(), 500, 8192, None, 1, 0, 0),
    ("t4", set(), {"t4"}, 1000, 0, None, 1, 0, 0),
    ("gpu:devices=4,cpu=16,ram=64GiB", {"gpu"}, set(), 1000, 0, None, 4, 16000, 65536),
    ("v100:0.3,cpu=500m", set(), {"v100-16gb", "v100-32gb", "v100s-32gb"}, 300, 0, None, 1, 500, 0),
    ("cpu:2,8GiB", set(), set(), 0, 0, None, 1, 2000, 8192),
    ("mlu370-x8:10%", set(), {"mlu370-x8"}, 100, 0, None, 1, 0, 0),
]


@pytest.mark.parametrize(
    ("spec", "kinds", "models", "compute", "memory", "profile", "devices", "cpu", "ram"),
    PARSE_CASES,
    ids=[c[0] for c in PARSE_CASES],
)
def test_parse(
    spec: str,
    kinds: set[str],
    models: set[str],
    compute: int,
    memory: int,
    profile: str | None,
    devices: int,
    cpu: int,
    ram: int,
) -> None:
    r = parse_request(spec)
    assert set(r.selector.kinds) == kinds
    assert set(r.selector.models) == models
    assert (r.compute_milli, r.memory_mib, r.profile, r.devices) == (compute, memory, profile, devices)
    assert (r.host_cpu_milli, r.host_memory_mib) == (cpu, ram)


def test_vendor_selectors() -> None:
    assert parse_request("nvidia:0.5").selector.vendors == {"nvidia"}
    ascend = parse_request("ascend:0.5").selector
    assert ascend.vendors == {"huawei"}
    assert ascend.kinds == {"npu"}


BAD = [
    ("foo:0.5", "selector", "foo"),
    ("gpu:1.5", "compute", "1.5"),
    ("gpu:0", "compute", "0"),
    ("gpu:-0.2", "compute", "-0.2"),
    ("gpu:150%", "compute", "150%"),
    ("gpu:-1GiB", "memory", "-1GiB"),
    ("gpu:12parsecs", "memory", "12parsecs"),
    ("v100s:1g.10gb", "profile", "1g.10gb"),
    ("a100:vir05_1c_16g", "profile", "vir05_1c_16g"),
    ("gpu:0.5,devices=2", "devices", "2"),
    ("gpu:devices=0", "devices", "0"),
    ("gpu:devices=two", "devices", "two"),
    ("gpu:0.5,color=red", "option", "color"),
    ("gpu:priority=99999", "priority", "99999"),
    ("", "request", ""),
]


@pytest.mark.parametrize(("spec", "field", "value"), BAD, ids=[b[0] or "empty" for b in BAD])
def test_bad_input_names_field_value_and_allowed(spec: str, field: str, value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_request(spec)
    err = info.value
    assert err.field == field
    assert str(value) in str(err.value)
    assert "allowed" in str(err)
    assert err.allowed


def test_direct_construction_is_validated() -> None:
    with pytest.raises(InvalidRequest, match="kind"):
        SliceRequest(selector=Selector(kinds=frozenset({"tpu"})))
    with pytest.raises(InvalidRequest, match="model"):
        SliceRequest(selector=Selector(models=frozenset({"b300"})))
    with pytest.raises(InvalidRequest, match="memory"):
        SliceRequest(memory_mib=-1)


def test_overrides_and_describe() -> None:
    r = parse_request("gpu:0.25", owner="ana", priority=5)
    assert (r.owner, r.priority) == ("ana", 5)
    assert r.describe() == "gpu:0.25"
    assert (
        SliceRequest(selector=Selector(kinds=frozenset({"npu"})), compute_milli=300).describe() == "npu:30%"
    )
