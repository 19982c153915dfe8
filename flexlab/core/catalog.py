"""The device catalog: real accelerator models, their figures and how they may be sliced.

Every figure carries its source (``DeviceModel.sources``). Peak compute is dense FP16/BF16
tensor throughput in TFLOP/s (no sparsity), bandwidth in GB/s, memory in MiB. Figures that
a vendor does not publish are ``None``, never guessed; the openb trace's G1/G2/G3 models
are undisclosed by Alibaba and carry no figures at all.

Slicing
-------
A model may be sliced in two ways; a physical device uses one at a time:

* ``fraction``: any share of the device in steps of ``granularity_milli`` (MPS or time
  slicing on NVIDIA, Flex:ai-style 10% units on Ascend, sMLU on Cambricon).
* ``profiles``: a fixed menu of named instances (NVIDIA MIG profiles, Ascend vNPU
  templates). A profile takes ``units`` of the model's ``profile_units`` compute units and
  ``memory_mib``; MIG profiles also occupy a contiguous run of ``mem_slots`` memory slices
  starting at one of ``starts`` (NVIDIA's placement rules), so that only the combinations
  the hardware accepts can be built.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from flexlab.core.errors import UnknownName

GIB = 1024


@dataclass(frozen=True)
class Profile:
    """One named instance shape of a profile-sliced model (a MIG profile, a vNPU template)."""

    name: str
    #: Compute units taken (MIG "g" slices, Ascend AI cores) out of ``DeviceModel.profile_units``.
    units: int
    memory_mib: int
    #: Ascend: AI CPUs taken (out of ``DeviceModel.aicpu``); 0 elsewhere.
    aicpu: int = 0
    #: MIG: memory slices occupied and the allowed start slices; empty = no slot rule.
    mem_slots: int = 0
    starts: tuple[int, ...] = ()


@dataclass(frozen=True)
class DeviceModel:
    """A catalog entry: one accelerator model."""

    key: str
    vendor: str  # "nvidia" | "huawei" | "cambricon" | "alibaba-undisclosed"
    kind: str  # "gpu" | "npu" | "mlu"
    name: str  # the vendor's marketing name
    family: str  # a short alias a user may type: "a100", "910b", "t4"
    memory_mib: int | None
    peak_tflops_fp16: float | None
    bandwidth_gbps: float | None
    #: Compute step for fraction slicing, in milli; 0 = fraction slicing not offered.
    granularity_milli: int = 10
    #: Profile menu (MIG / vNPU); empty = not profile-sliceable.
    profiles: tuple[Profile, ...] = ()
    #: Total compute units the profiles are counted in (7 MIG slices, 20 AI cores...).
    profile_units: int = 0
    #: Memory slices for MIG slot rules (8 on A100/H100); 0 = no slot rule.
    mem_slots: int = 0
    aicpu: int = 0
    #: Product names as reported by the vendors' tools (NVML, npu-smi, cnmon).
    product_names: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    notes: str = ""
    _profile_index: dict[str, Profile] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_profile_index", {p.name: p for p in self.profiles})

    def profile(self, name: str) -> Profile:
        """The named profile, or ``UnknownName`` listing the menu."""
        try:
            return self._profile_index[name]
        except KeyError:
            raise UnknownName(f"profile of {self.key}", name, self._profile_index) from None

    def has_profile(self, name: str) -> bool:
        return name in self._profile_index

    def profile_milli(self, profile: Profile) -> int:
        """A profile's compute share in milli (floored so a full menu never exceeds 1000)."""
        return (profile.units * 1000) // max(self.profile_units, 1)

    @property
    def memory_known(self) -> bool:
        return self.memory_mib is not None


def _mig(name: str, g: int, mem_gb: int, slots: int, starts: Iterable[int]) -> Profile:
    return Profile(name=name, units=g, memory_mib=mem_gb * GIB, mem_slots=slots, starts=tuple(starts))


def _vnpu(name: str, aic: int, aicpu: int, mem_mib: int) -> Profile:
    return Profile(name=name, units=aic, aicpu=aicpu, memory_mib=mem_mib)


# MIG placement rules (start memory slice per profile) of the 80 GB A100 and H100, from
# NVIDIA's MIG User Guide, "Supported MIG Profiles" tables (placement column).
_MIG_80GB = (
    _mig("1g.10gb", 1, 10, 1, range(7)),
    _mig("1g.20gb", 1, 20, 2, (0, 2, 4, 6)),
    _mig("2g.20gb", 2, 20, 2, (0, 2, 4)),
    _mig("3g.40gb", 3, 40, 4, (0, 4)),
    _mig("4g.40gb", 4, 40, 4, (0,)),
    _mig("7g.80gb", 7, 80, 8, (0,)),
)
_MIG_40GB = (
    _mig("1g.5gb", 1, 5, 1, range(7)),
    _mig("1g.10gb", 1, 10, 2, (0, 2, 4, 6)),
    _mig("2g.10gb", 2, 10, 2, (0, 2, 4)),
    _mig("3g.20gb", 3, 20, 4, (0, 4)),
    _mig("4g.20gb", 4, 20, 4, (0,)),
    _mig("7g.40gb", 7, 40, 8, (0,)),
)

_SRC_MIG = "NVIDIA MIG User Guide, Supported MIG Profiles: docs.nvidia.com/datacenter/tesla/mig-user-guide/"
_SRC_HAMI_VNPU = "HAMi device config (charts/hami/templates/scheduler/device-configmap.yaml), vNPU templates"
_SRC_NPU_SMI = "Huawei Ascend npu-smi command reference, 'Creating a vNPU' (template-info)"

_ENTRIES: tuple[DeviceModel, ...] = (
    DeviceModel(
        key="t4",
        vendor="nvidia",
        kind="gpu",
        name="NVIDIA T4",
        family="t4",
        memory_mib=16 * GIB,
        peak_tflops_fp16=65.0,
        bandwidth_gbps=320.0,
        product_names=("Tesla T4", "NVIDIA T4"),
        sources=(
            "NVIDIA T4 Tensor Core GPU datasheet: 65 TFLOPS mixed-precision FP16/FP32, 16 GB GDDR6, 320 GB/s",
        ),
    ),
    DeviceModel(
        key="p100",
        vendor="nvidia",
        kind="gpu",
        name="NVIDIA Tesla P100 16GB (PCIe)",
        family="p100",
        memory_mib=16 * GIB,
        peak_tflops_fp16=18.7,
        bandwidth_gbps=732.0,
        product_names=("Tesla P100-PCIE-16GB", "Tesla P100-SXM2-16GB"),
        sources=("NVIDIA Tesla P100 datasheet: 18.7 TFLOPS FP16 (PCIe), 16 GB CoWoS HBM2 at 732 GB/s",),
    ),
    DeviceModel(
        key="v100-16gb",
        vendor="nvidia",
        kind="gpu",
        name="NVIDIA V100 SXM2 16GB",
        family="v100",
        memory_mib=16 * GIB,
        peak_tflops_fp16=125.0,
        bandwidth_gbps=900.0,
        product_names=("Tesla V100-SXM2-16GB", "Tesla V100-PCIE-16GB"),
        aliases=("v100m16",),
        sources=("NVIDIA V100 Tensor Core GPU datasheet: 125 TFLOPS tensor (SXM2), 16/32 GB HBM2, 900 GB/s",),
    ),
    DeviceModel(
        key="v100-32gb",
        vendor="nvidia",
        kind="gpu",
        name="NVIDIA V100 SXM2 32GB",
        family="v100",
        memory_mib=32 * GIB,
        peak_tflops_fp16=125.0,
        bandwidth_gbps=900.0,
        product_names=("Tesla V100-SXM2-32GB", "Tesla V100-PCIE-32GB", "Tesla V100-SXM2-32GB-LS"),
        aliases=("v100m32",),
        sources=("NVIDIA V100 Tensor Core GPU datasheet: 125 TFLOPS tensor (SXM2), 16/32 GB HBM2, 900 GB/s",),
    ),
    DeviceModel(
        key="v100s-32gb",
        vendor="nvidia",
        kind="gpu",
        name="NVIDIA V100S PCIe 32GB",
        family="v100",
        memory_mib=32 * GIB,
        peak_tflops_fp16=130.0,
        bandwidth_gbps=1134.0,
        product_names=("Tesla V100S-PCIE-32GB",),
        aliases=("v100s",),
        sources=(
            "NVIDIA V100 Tensor Core GPU datasheet (V100S PCIe): 130 TFLOPS tensor, 32 GB HBM2, 1134 GB/s",
        ),
    ),
    DeviceModel(
        key="a10",
        vendor="nvidia",
        kind="gpu",
        name="NVIDIA A10",
        family="a10",
        memory_mib=24 * GIB,
        peak_tflops_fp16=125.0,
        bandwidth_gbps=600.0,
        product_names=("NVIDIA A10",),
        sources=(
            "NVIDIA A10 Tensor Core GPU datasheet: 125 TFLOPS FP16 tensor (dense), 24 GB GDDR6, 600 GB/s",
        ),
    ),
    DeviceModel(
        key="a100-40gb",
        vendor="nvidia",
        kind="gpu",
        name="NVIDIA A100 40GB",
        family="a100",
        memory_mib=40 * GIB,
        peak_tflops_fp16=312.0,
        bandwidth_gbps=1555.0,
        profiles=_MIG_40GB,
        profile_units=7,
        mem_slots=8,
        product_names=("NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB"),
        sources=(
            "NVIDIA A100 Tensor Core GPU datasheet: 312 TFLOPS FP16/BF16 dense, 40 GB HBM2 at 1,555 GB/s",
            _SRC_MIG,
        ),
    ),
    DeviceModel(
        key="a100-80gb",
        vendor="nvidia",
        kind="gpu",
        name="NVIDIA A100 80GB",
        family="a100",
        memory_mib=80 * GIB,
        peak_tflops_fp16=312.0,
        bandwidth_gbps=2039.0,
        profiles=_MIG_80GB,
        profile_units=7,
        mem_slots=8,
        product_names=("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "NVIDIA A100-PCIE-80GB"),
        sources=(
            "NVIDIA A100 Tensor Core GPU datasheet: 312 TFLOPS FP16/BF16 dense, 80 GB HBM2e at 2,039 GB/s (SXM)",
            _SRC_MIG,
        ),
    ),
    DeviceModel(
        key="h100-80gb",
        vendor="nvidia",
        kind="gpu",
        name="NVIDIA H100 80GB (SXM)",
        family="h100",
        memory_mib=80 * GIB,
        peak_tflops_fp16=989.0,
        bandwidth_gbps=3350.0,
        profiles=_MIG_80GB,
        profile_units=7,
        mem_slots=8,
        product_names=("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB", "NVIDIA H100"),
        sources=(
            "NVIDIA H100 Tensor Core GPU datasheet: 989 TFLOPS FP16/BF16 dense (1,979 with sparsity), 80 GB HBM3 at 3.35 TB/s (SXM)",
            _SRC_MIG,
        ),
    ),
    DeviceModel(
        key="h100-pcie",
        vendor="nvidia",
        kind="gpu",
        name="NVIDIA H100 PCIe 80GB",
        family="h100",
        memory_mib=80 * GIB,
        peak_tflops_fp16=756.0,
        bandwidth_gbps=2000.0,
        profiles=_MIG_80GB,
        profile_units=7,
        mem_slots=8,
        product_names=("NVIDIA H100 PCIe",),
        sources=(
            "NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe column): 756 TFLOPS FP16/BF16 dense, 80 GB HBM2e at 2 TB/s",
            _SRC_MIG,
        ),
    ),
    DeviceModel(
        key="h100-nvl",
        vendor="nvidia",
        kind="gpu",
        name="NVIDIA H100 NVL 94GB",
        family="h100",
        memory_mib=94 * GIB,
        peak_tflops_fp16=835.0,
        bandwidth_gbps=3900.0,
        profiles=(
            _mig("1g.12gb", 1, 12, 1, range(7)),
            _mig("1g.24gb", 1, 24, 2, (0, 2, 4, 6)),
            _mig("2g.24gb", 2, 24, 2, (0, 2, 4)),
            _mig("3g.47gb", 3, 47, 4, (0, 4)),
            _mig("4g.47gb", 4, 47, 4, (0,)),
            _mig("7g.94gb", 7, 94, 8, (0,)),
        ),
        profile_units=7,
        mem_slots=8,
        product_names=("NVIDIA H100 NVL",),
        sources=(
            "NVIDIA H100 Tensor Core GPU datasheet (H100 NVL column): 835 TFLOPS FP16/BF16 dense, 94 GB HBM3 at 3.9 TB/s",
            _SRC_MIG + "; HAMi device config: 1g.12gb, 2g.24gb, 3g.47gb, 7g.94gb",
        ),
    ),
    DeviceModel(
        key="a30",
        vendor="nvidia",
        kind="gpu",
        name="NVIDIA A30",
        family="a30",
        memory_mib=24 * GIB,
        peak_tflops_fp16=165.0,
        bandwidth_gbps=933.0,
        profiles=(
            _mig("1g.6gb", 1, 6, 1, range(4)),
            _mig("2g.12gb", 2, 12, 2, (0, 2)),
            _mig("4g.24gb", 4, 24, 4, (0,)),
        ),
        profile_units=4,
        mem_slots=4,
        product_names=("NVIDIA A30",),
        sources=(
            "NVIDIA A30 Tensor Core GPU datasheet: 165 TFLOPS FP16 dense, 24 GB HBM2 at 933 GB/s",
            _SRC_MIG + " (A30: 4 compute and 4 memory slices)",
        ),
    ),
    DeviceModel(
        key="ascend-910b2",
        vendor="huawei",
        kind="npu",
        name="Huawei Ascend 910B2",
        family="910b",
        memory_mib=64 * GIB,
        peak_tflops_fp16=None,
        bandwidth_gbps=None,
        granularity_milli=100,
        profiles=(
            _vnpu("vir03_1c_8g", 3, 1, 8 * GIB),
            _vnpu("vir06_1c_16g", 6, 1, 16 * GIB),
            _vnpu("vir12_3c_32g", 12, 3, 32 * GIB),
        ),
        profile_units=24,
        aicpu=6,
        product_names=("910B2", "Ascend910B2"),
        sources=(_SRC_HAMI_VNPU + ": 910B2 = 24 AI cores, 6 AI CPUs, 64 GiB", _SRC_NPU_SMI),
        notes="Huawei publishes no per-SKU FP16 peak or bandwidth for 910B2; left unset.",
    ),
    DeviceModel(
        key="ascend-910b3",
        vendor="huawei",
        kind="npu",
        name="Huawei Ascend 910B3",
        family="910b",
        memory_mib=64 * GIB,
        peak_tflops_fp16=None,
        bandwidth_gbps=None,
        granularity_milli=100,
        profiles=(_vnpu("vir05_1c_16g", 5, 1, 16 * GIB), _vnpu("vir10_3c_32g", 10, 3, 32 * GIB)),
        profile_units=20,
        aicpu=7,
        product_names=("910B3", "Ascend910B3"),
        sources=(_SRC_HAMI_VNPU + ": 910B3 = 20 AI cores, 7 AI CPUs, 64 GiB", _SRC_NPU_SMI),
        notes="Huawei publishes no per-SKU FP16 peak or bandwidth for 910B3; left unset.",
    ),
    DeviceModel(
        key="ascend-910b4",
        vendor="huawei",
        kind="npu",
        name="Huawei Ascend 910B4 (32 GB)",
        family="910b",
        memory_mib=32 * GIB,
        peak_tflops_fp16=None,
        bandwidth_gbps=None,
        granularity_milli=100,
        profiles=(_vnpu("vir05_1c_8g", 5, 1, 8 * GIB), _vnpu("vir10_3c_16g", 10, 3, 16 * GIB)),
        profile_units=20,
        aicpu=7,
        product_names=("910B4", "Ascend910B4"),
        sources=(_SRC_HAMI_VNPU + ": 910B4 (32 GiB) = 20 AI cores",),
        notes="AI CPU count of 910B4 taken as 910B3's (7); not separately published.",
    ),
    DeviceModel(
        key="ascend-910b4-1",
        vendor="huawei",
        kind="npu",
        name="Huawei Ascend 910B4-1 (64 GB)",
        family="910b",
        memory_mib=64 * GIB,
        peak_tflops_fp16=None,
        bandwidth_gbps=None,
        granularity_milli=100,
        profiles=(_vnpu("vir05_1c_16g", 5, 1, 16 * GIB), _vnpu("vir10_3c_32g", 10, 3, 32 * GIB)),
        profile_units=20,
        aicpu=7,
        product_names=("910B4-1", "Ascend910B4-1"),
        sources=(_SRC_HAMI_VNPU + ": 910B4-1 (64 GiB) templates vir05_1c_16g, vir10_3c_32g",),
        notes="AI core and AI CPU counts taken as 910B4's; not separately published.",
    ),
    DeviceModel(
        key="ascend-910c",
        vendor="huawei",
        kind="npu",
        name="Huawei Ascend 910C (one die)",
        family="910c",
        memory_mib=64 * GIB,
        peak_tflops_fp16=None,
        bandwidth_gbps=None,
        granularity_milli=100,
        profiles=(_vnpu("vir05_1c_16g", 5, 1, 16 * GIB), _vnpu("vir10_3c_32g", 10, 3, 32 * GIB)),
        profile_units=20,
        aicpu=7,
        product_names=("910C", "Ascend910C"),
        sources=(_SRC_HAMI_VNPU + ": 910C templates vir05_1c_16g, vir10_3c_32g (superPod)",),
        notes="Modelled per die with the 910B3 template capacities that HAMi uses; figures unverified.",
    ),
    DeviceModel(
        key="ascend-310p3",
        vendor="huawei",
        kind="npu",
        name="Huawei Ascend 310P3 (Atlas 300I Pro)",
        family="310p",
        memory_mib=21527,
        peak_tflops_fp16=70.0,
        bandwidth_gbps=204.8,
        granularity_milli=100,
        profiles=(
            _vnpu("vir01", 1, 1, 3 * GIB),
            _vnpu("vir02", 2, 2, 6 * GIB),
            _vnpu("vir02_1c", 2, 1, 6 * GIB),
            _vnpu("vir04", 4, 4, 12 * GIB),
            _vnpu("vir04_3c", 4, 3, 12 * GIB),
        ),
        profile_units=8,
        aicpu=7,
        product_names=("310P3", "Ascend310P3", "310P"),
        aliases=("310p3",),
        sources=(
            "Huawei Atlas 300I Pro datasheet: 70 TFLOPS FP16, 24 GB LPDDR4X at 204.8 GB/s",
            _SRC_HAMI_VNPU + ": 310P3 = 8 AI cores, 7 AI CPUs, 21527 MiB allocatable",
        ),
    ),
    DeviceModel(
        key="mlu370-x8",
        vendor="cambricon",
        kind="mlu",
        name="Cambricon MLU370-X8",
        family="mlu370",
        memory_mib=48 * GIB,
        peak_tflops_fp16=96.0,
        bandwidth_gbps=614.4,
        product_names=("MLU370-X8",),
        sources=("Cambricon MLU370-X8 product page: 96 TFLOPS FP16, 48 GB LPDDR5 at 614.4 GB/s",),
    ),
)

# The openb trace's undisclosed models: no figures, any memory (the trace does not model it).
_OPENB_UNDISCLOSED = tuple(
    DeviceModel(
        key=f"openb-{g.lower()}",
        vendor="alibaba-undisclosed",
        kind="gpu",
        name=f"openb {g} (undisclosed)",
        family=g.lower(),
        memory_mib=None,
        peak_tflops_fp16=None,
        bandwidth_gbps=None,
        granularity_milli=1,
        aliases=(g.lower(),),
        sources=("Alibaba cluster-trace-gpu-v2023 (openb): model name only, figures undisclosed",),
    )
    for g in ("G1", "G2", "G3")
)

CATALOG: dict[str, DeviceModel] = {m.key: m for m in _ENTRIES + _OPENB_UNDISCLOSED}

#: openb ``model`` column -> catalog key.
OPENB_MODELS: dict[str, str] = {
    "G1": "openb-g1",
    "G2": "openb-g2",
    "G3": "openb-g3",
    "T4": "t4",
    "P100": "p100",
    "V100M16": "v100-16gb",
    "V100M32": "v100-32gb",
    "A10": "a10",
}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


_BY_ALIAS: dict[str, str] = {}
for _m in CATALOG.values():
    for _alias in (_m.key, *_m.aliases, *_m.product_names):
        _BY_ALIAS.setdefault(_norm(_alias), _m.key)
    if _m.vendor == "huawei":
        _BY_ALIAS.setdefault(_norm("ascend" + _m.key.removeprefix("ascend-")), _m.key)
        _BY_ALIAS.setdefault(_norm(_m.key.removeprefix("ascend-")), _m.key)


def get_model(key: str) -> DeviceModel:
    """A catalog entry by key or alias; ``UnknownName`` lists the known keys."""
    found = resolve_model(key)
    if found is None:
        raise UnknownName("device model", key, CATALOG)
    return found


def resolve_model(name: str) -> DeviceModel | None:
    """A catalog entry by key, alias or exact product name; None when unknown."""
    key = _BY_ALIAS.get(_norm(name))
    return CATALOG[key] if key else None


def models_in_family(family: str) -> tuple[DeviceModel, ...]:
    """All models of a family alias ("a100" -> a100-40gb, a100-80gb)."""
    fam = _norm(family)
    return tuple(m for m in CATALOG.values() if _norm(m.family) == fam)


def lookup_product_name(name: str) -> DeviceModel | None:
    """Map a product name as a vendor tool reports it to a catalog entry.

    Exact product names first, then the longest alias contained in the name, so that
    "NVIDIA A100-SXM4-80GB" and "Ascend910B3" both resolve.
    """
    exact = resolve_model(name)
    if exact is not None:
        return exact
    norm = _norm(name)
    best: tuple[int, str] | None = None
    for alias, key in _BY_ALIAS.items():
        if len(alias) >= 3 and alias in norm and (best is None or len(alias) > best[0]):
            best = (len(alias), key)
    return CATALOG[best[1]] if best else None
