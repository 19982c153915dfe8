from __future__ import annotations

import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.core.units import (
    format_compute,
    format_memory,
    parse_compute,
    parse_cpu,
    parse_duration,
    parse_memory,
)


@pytest.mark.parametrize(
    ("text", "milli"),
    [("0.25", 250), ("25%", 250), (0.1, 100), ("1", 1000), (1, 1000), ("0.001", 1), ("12.5%", 125)],
    ids=str,
)
def test_compute(text: str | float, milli: int) -> None:
    assert parse_compute(text) == milli


@pytest.mark.parametrize("bad", ["0", "1.01", "-0.5", "abc", "", "nan", True, "0.0001"], ids=repr)
def test_compute_bad(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="compute"):
        parse_compute(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("16GiB", 16384),
        ("16G", 16384),
        ("512MiB", 512),
        ("1.5 GiB", 1536),
        (100, 100),
        ("2048", 2048),
        ("1TiB", 1 << 20),
    ],
    ids=str,
)
def test_memory(text: str | int, mib: int) -> None:
    assert parse_memory(text) == mib


@pytest.mark.parametrize("bad", ["-1G", "16 parsecs", "G", -5, True], ids=repr)
def test_memory_bad(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="memory"):
        parse_memory(bad)  # type: ignore[arg-type]


def test_cpu_and_duration() -> None:
    assert parse_cpu("500m") == 500
    assert parse_cpu(2) == 2000
    assert parse_duration("2h") == 7200
    assert parse_duration("90s") == 90
    assert parse_duration(30) == 30
    for bad in ("0s", "-1h", "soon"):
        with pytest.raises(InvalidRequest, match="ttl"):
            parse_duration(bad)


def test_format() -> None:
    assert format_memory(512) == "512 MiB"
    assert format_memory(1536) == "1.5 GiB"
    assert format_memory(81920) == "80 GiB"
    assert format_compute(250) == "25%"
    assert format_compute(125) == "12.5%"
