from __future__ import annotations

import pytest

from flexlab.core.catalog import CATALOG, OPENB_MODELS, get_model, lookup_product_name
from flexlab.core.errors import UnknownName

REQUIRED = [
    "t4",
    "v100s-32gb",
    "a100-80gb",
    "h100-80gb",
    "ascend-910b2",
    "ascend-910b3",
    "ascend-910b4",
    "ascend-910c",
    "ascend-310p3",
    "mlu370-x8",
]


@pytest.mark.parametrize("key", REQUIRED)
def test_required_models_are_cited(key: str) -> None:
    m = CATALOG[key]
    assert m.sources, f"{key} has no source"
    assert m.memory_mib
    assert m.memory_mib > 0


@pytest.mark.parametrize(
    ("key", "profiles"),
    [
        ("a100-80gb", {"1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"}),
        ("h100-80gb", {"1g.10gb", "2g.20gb", "3g.40gb", "7g.80gb"}),
        ("ascend-910b3", {"vir05_1c_16g", "vir10_3c_32g"}),
        ("ascend-910b2", {"vir03_1c_8g", "vir06_1c_16g", "vir12_3c_32g"}),
        ("ascend-310p3", {"vir01", "vir02", "vir04"}),
    ],
)
def test_profile_menus(key: str, profiles: set[str]) -> None:
    assert profiles <= {p.name for p in CATALOG[key].profiles}


def test_full_menu_never_exceeds_a_device() -> None:
    for m in CATALOG.values():
        for p in m.profiles:
            assert m.profile_milli(p) * (m.profile_units // p.units) <= 1000


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("Tesla V100S-PCIE-32GB", "v100s-32gb"),
        ("Tesla T4", "t4"),
        ("NVIDIA H100 80GB HBM3", "h100-80gb"),
        ("Ascend910B3", "ascend-910b3"),
        ("910B3", "ascend-910b3"),
        ("310P3", "ascend-310p3"),
        ("MLU370-X8", "mlu370-x8"),
    ],
)
def test_product_names(name: str, key: str) -> None:
    found = lookup_product_name(name)
    assert found is not None
    assert found.key == key


def test_unknown_model_lists_known() -> None:
    with pytest.raises(UnknownName, match="a100-80gb"):
        get_model("b300")
    assert lookup_product_name("Quantum Flux 9000") is None


def test_openb_models_map_to_catalog() -> None:
    assert set(OPENB_MODELS) == {"G1", "G2", "G3", "T4", "P100", "V100M16", "V100M32", "A10"}
    for key in OPENB_MODELS.values():
        assert key in CATALOG
