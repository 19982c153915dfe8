"""What placement reads from a request: a structural view of ``SliceRequest``.

Placement depends on these attribute names only, so any object that carries them (the
core's ``SliceRequest``, the simulator's trace requests, a test's stub) can be placed.
"""

from __future__ import annotations

from typing import Protocol


class SelectorView(Protocol):
    """Which devices qualify; empty sets mean "no constraint"."""

    @property
    def kinds(self) -> frozenset[str]: ...

    @property
    def vendors(self) -> frozenset[str]: ...

    @property
    def models(self) -> frozenset[str]: ...

    @property
    def min_memory_mib(self) -> int: ...


class RequestView(Protocol):
    """The fields of ``flexlab.core.request.SliceRequest`` that placement uses.

    ``compute_milli`` is per device (1..1000, 1000 = whole, 0 = CPU-only); ``memory_mib``
    is device memory per device (0 = proportional to compute); ``devices`` > 1 asks for
    that many whole devices on one host.
    """

    @property
    def selector(self) -> SelectorView: ...

    @property
    def compute_milli(self) -> int: ...

    @property
    def memory_mib(self) -> int: ...

    @property
    def profile(self) -> str | None: ...

    @property
    def devices(self) -> int: ...

    @property
    def host_cpu_milli(self) -> int: ...

    @property
    def host_memory_mib(self) -> int: ...

    @property
    def priority(self) -> int: ...


def is_cpu_only(request: RequestView) -> bool:
    """A request that needs no device, only host CPU and memory."""
    return request.compute_milli == 0 and request.profile is None


def is_multi_device(request: RequestView) -> bool:
    """A request for several whole devices on one host."""
    return request.devices > 1
