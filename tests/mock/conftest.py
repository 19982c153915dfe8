"""Every mock test starts with no mock devices accounted for and no mock variables set."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from flexlab.mock import SliceContext, reset_mock_devices
from flexlab.mock.env import ALL_VARS


@pytest.fixture(autouse=True)
def clean_mock_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ALL_VARS:
        monkeypatch.delenv(name, raising=False)
    reset_mock_devices()
    yield
    reset_mock_devices()


def _make_ctx(
    model: str = "v100s-32gb",
    share_milli: int = 1000,
    memory_mib: int = 4096,
    *,
    device_id: str = "d0",
    slice_id: str = "s0",
    **kw: object,
) -> SliceContext:
    """A slice context with test defaults: a whole reference device, 4 GiB."""
    return SliceContext(
        share_milli=share_milli,
        memory_mib=memory_mib,
        model_key=model,
        device_id=device_id,
        slice_id=slice_id,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def make_ctx() -> Callable[..., SliceContext]:
    """``make_ctx(model, share_milli, memory_mib, device_id=, slice_id=, speed=, granted_milli=)``."""
    return _make_ctx
