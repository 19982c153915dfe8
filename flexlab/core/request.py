"""What a task or a user asks for, and the parser for the strings users type.

Grammar (case-insensitive)::

    SPEC     := SELECTOR [":" ITEM ("," ITEM)*]
    SELECTOR := "gpu" | "npu" | "mlu" | "any" | "cpu"      (a device kind; any = any accelerator)
              | "nvidia" | "huawei" | "ascend" | "cambricon"   (a vendor)
              | a catalog model or family: "a100", "a100-80gb", "ascend910b3", "910b", "t4" ...
    ITEM     := 0.25 | 25%                  compute share of one device (default: the whole device)
              | 16GiB | 512MiB              device memory (default: proportional to compute)
              | 1g.10gb | vir05_1c_16g      a named profile (MIG / vNPU template) of the model
              | devices=N                   N whole devices on one host
              | cpu=2 | ram=8GiB            what the task needs from its host
              | priority=N

Examples::

    >>> parse_request("gpu:0.25").compute_milli
    250
    >>> r = parse_request("npu:25%,16GiB")
    >>> (sorted(r.selector.kinds), r.compute_milli, r.memory_mib)
    (['npu'], 250, 16384)
    >>> parse_request("a100:1g.10gb").profile
    '1g.10gb'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from flexlab.core.catalog import CATALOG, DeviceModel, models_in_family, resolve_model
from flexlab.core.errors import InvalidRequest
from flexlab.core.units import parse_compute, parse_cpu, parse_memory

KINDS = frozenset({"gpu", "npu", "mlu"})
VENDORS = frozenset({"nvidia", "huawei", "cambricon", "mock"})
_VENDOR_WORDS = {"nvidia": "nvidia", "huawei": "huawei", "ascend": "huawei", "cambricon": "cambricon"}
_SELECTOR_ALLOWED = (
    "a kind (gpu, npu, mlu, any, cpu), a vendor (nvidia, huawei/ascend, cambricon) "
    "or a catalog model or family (e.g. a100, a100-80gb, v100s, t4, ascend910b3, 910b, 310p3, mlu370-x8)"
)
MAX_DEVICES_PER_HOST = 64
MAX_PRIORITY = 1000


@dataclass(frozen=True)
class Selector:
    """Which devices qualify. Empty sets mean "no constraint"."""

    kinds: frozenset[str] = frozenset()
    vendors: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    min_memory_mib: int = 0

    def matches(self, model: DeviceModel) -> bool:
        return (
            (not self.kinds or model.kind in self.kinds)
            and (not self.vendors or model.vendor in self.vendors)
            and (not self.models or model.key in self.models)
            and (model.memory_mib is None or model.memory_mib >= self.min_memory_mib)
        )

    def describe(self) -> str:
        parts = [*sorted(self.kinds), *sorted(self.vendors), *sorted(self.models)]
        return "/".join(parts) if parts else "any"


@dataclass(frozen=True)
class SliceRequest:
    """A request for device capacity (per device) and host capacity, in core units.

    ``compute_milli`` is per device: 1..1000, 1000 = a whole device; 0 = a CPU-only
    request. ``memory_mib`` is device memory per device; 0 = proportional to compute.
    ``devices`` > 1 asks for that many whole devices on one host.
    """

    selector: Selector = field(default_factory=Selector)
    compute_milli: int = 1000
    memory_mib: int = 0
    profile: str | None = None
    devices: int = 1
    host_cpu_milli: int = 0
    host_memory_mib: int = 0
    priority: int = 0
    owner: str | None = None
    workload_class: str | None = None
    expected_duration_s: float | None = None
    #: The text the request was parsed from, for messages.
    spec: str = ""

    def __post_init__(self) -> None:
        validate(self)

    @property
    def is_cpu_only(self) -> bool:
        return self.compute_milli == 0 and self.profile is None

    @property
    def is_whole(self) -> bool:
        return self.compute_milli == 1000 and self.profile is None

    def with_owner(self, owner: str | None) -> SliceRequest:
        return replace(self, owner=owner)

    def with_priority(self, priority: int) -> SliceRequest:
        return replace(self, priority=priority)

    def describe(self) -> str:
        """A short text such as ``npu:25%,16GiB``."""
        if self.spec:
            return self.spec
        if self.is_cpu_only:
            return f"cpu:{self.host_cpu_milli}m"
        what = self.profile or (f"{self.compute_milli / 10:g}%" if self.compute_milli < 1000 else "1")
        mem = f",{self.memory_mib}MiB" if self.memory_mib else ""
        many = f",devices={self.devices}" if self.devices > 1 else ""
        return f"{self.selector.describe()}:{what}{mem}{many}"


def validate(req: SliceRequest) -> None:
    """Raise ``InvalidRequest`` if any field is out of range or inconsistent."""
    sel = req.selector
    if not sel.kinds <= KINDS:
        raise InvalidRequest("kind", sorted(sel.kinds - KINDS), "gpu, npu, mlu")
    if not sel.vendors <= VENDORS:
        raise InvalidRequest("vendor", sorted(sel.vendors - VENDORS), ", ".join(sorted(VENDORS)))
    unknown = sel.models - CATALOG.keys()
    if unknown:
        raise InvalidRequest("model", sorted(unknown), "catalog keys: " + ", ".join(sorted(CATALOG)))
    if sel.min_memory_mib < 0:
        raise InvalidRequest("min_memory", sel.min_memory_mib, ">= 0 MiB")
    if not 0 <= req.compute_milli <= 1000:
        raise InvalidRequest("compute", req.compute_milli / 1000, "a share in (0, 1] of one device")
    if req.memory_mib < 0:
        raise InvalidRequest("memory", req.memory_mib, ">= 0 MiB")
    if not 1 <= req.devices <= MAX_DEVICES_PER_HOST:
        raise InvalidRequest("devices", req.devices, f"1..{MAX_DEVICES_PER_HOST} devices on one host")
    if req.devices > 1 and (req.compute_milli != 1000 or req.profile is not None):
        raise InvalidRequest("devices", req.devices, "several devices only as whole devices (compute 1)")
    if req.host_cpu_milli < 0:
        raise InvalidRequest("cpu", req.host_cpu_milli / 1000, ">= 0 cores")
    if req.host_memory_mib < 0:
        raise InvalidRequest("ram", req.host_memory_mib, ">= 0 MiB")
    if not -MAX_PRIORITY <= req.priority <= MAX_PRIORITY:
        raise InvalidRequest("priority", req.priority, f"an integer in -{MAX_PRIORITY}..{MAX_PRIORITY}")
    if req.expected_duration_s is not None and not req.expected_duration_s > 0:
        raise InvalidRequest("expected_duration", req.expected_duration_s, "a positive number of seconds")
    if req.profile is not None:
        candidates = [CATALOG[k] for k in sel.models] if sel.models else list(CATALOG.values())
        candidates = [m for m in candidates if sel.matches(m)]
        if not any(m.has_profile(req.profile) for m in candidates):
            menus = sorted({p.name for m in candidates for p in m.profiles})
            allowed = ", ".join(menus) if menus else "none: the selected models are not profile-sliceable"
            raise InvalidRequest("profile", req.profile, f"a profile of {sel.describe()}: {allowed}")


def _parse_selector(token: str) -> Selector:
    word = token.strip().lower()
    if word in ("any", ""):
        return Selector()
    if word in KINDS:
        return Selector(kinds=frozenset({word}))
    if word in _VENDOR_WORDS:
        vendor = _VENDOR_WORDS[word]
        kinds = frozenset({"npu"}) if word == "ascend" else frozenset()
        return Selector(vendors=frozenset({vendor}), kinds=kinds)
    model = resolve_model(word)
    if model is not None:
        return Selector(models=frozenset({model.key}))
    family = models_in_family(word)
    if family:
        return Selector(models=frozenset(m.key for m in family))
    raise InvalidRequest("selector", token, _SELECTOR_ALLOWED)


_KEY_RE = re.compile(r"^\s*([a-z_]+)\s*=\s*(.+?)\s*$")
_PROFILE_RE = re.compile(r"^(\d+g\.\d+gb|vir\d+(_\d+c)?(_\d+g)?)$")


def parse_request(spec: str | SliceRequest, **overrides: object) -> SliceRequest:
    """Parse a user's request string; keyword overrides set fields directly.

    >>> parse_request("gpu:0.5", owner="ana").owner
    'ana'
    """
    if isinstance(spec, SliceRequest):
        return replace(spec, **overrides) if overrides else spec  # type: ignore[arg-type]
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidRequest(
            "request", spec, "a string such as 'gpu:0.25', 'npu:25%,16GiB' or 'a100:1g.10gb'"
        )
    head, _, tail = spec.strip().partition(":")
    cpu_only = head.strip().lower() == "cpu"
    selector = Selector() if cpu_only else _parse_selector(head)
    compute: int | None = None
    memory = 0
    profile: str | None = None
    devices = 1
    host_cpu = 0
    host_mem = 0
    priority = 0
    cpu_positional: list[str] = []
    for raw in (t for t in tail.split(",") if t.strip()):
        item = raw.strip()
        low = item.lower()
        kv = _KEY_RE.match(low)
        if kv:
            key, val = kv.group(1), kv.group(2)
            if key in ("devices", "n", "count"):
                devices = _int_field("devices", val)
            elif key in ("cpu", "cpus", "cores"):
                host_cpu = parse_cpu(val, field="cpu")
            elif key in ("ram", "host_memory", "hostmem"):
                host_mem = parse_memory(val, field="ram")
            elif key in ("mem", "memory"):
                memory = parse_memory(val, field="memory")
            elif key in ("compute", "share"):
                compute = parse_compute(val)
            elif key == "priority":
                priority = _int_field("priority", val)
            elif key == "profile":
                profile = item.split("=", 1)[1].strip()
            else:
                raise InvalidRequest(
                    "option", key, "devices=, cpu=, ram=, memory=, compute=, priority=, profile="
                )
        elif cpu_only:
            cpu_positional.append(item)
        elif _PROFILE_RE.match(low):
            profile = low
        elif re.match(r"^-?[0-9.]+\s*[a-z]+$", low) and not low.endswith("%"):
            memory = parse_memory(item, field="memory")
        else:
            compute = parse_compute(item)
    if cpu_only:
        if cpu_positional:
            host_cpu = parse_cpu(cpu_positional[0], field="cpu")
        if len(cpu_positional) > 1:
            host_mem = parse_memory(cpu_positional[1], field="ram")
        if len(cpu_positional) > 2:
            raise InvalidRequest("request", spec, "cpu:CORES[,RAM], e.g. cpu:2,8GiB")
        compute = 0
    req = SliceRequest(
        selector=selector,
        compute_milli=1000 if compute is None and profile is None else (compute or 0),
        memory_mib=memory,
        profile=profile,
        devices=devices,
        host_cpu_milli=host_cpu,
        host_memory_mib=host_mem,
        priority=priority,
        spec=spec.strip(),
    )
    if req.profile is not None and compute is not None:
        raise InvalidRequest("compute", item, "either a share or a profile, not both")
    return replace(req, **overrides) if overrides else req  # type: ignore[arg-type]


def _int_field(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest(name, text, "an integer") from None
