"""In-process memory caps for a slice worker: PyTorch and CuPy, when they are importable.

Visibility variables pick the device; they do not limit memory. A slice worker calls
:func:`apply_memory_cap` once at start-up; it reads ``FLEXLAB_MEMORY_LIMIT_MIB`` (set by
every provider's ``isolation_env``) and caps the frameworks' allocators so that an
allocation beyond the slice raises the framework's own out-of-memory error:

* PyTorch: ``torch.<backend>.set_per_process_memory_fraction(limit / total, 0)`` for each
  available backend among ``cuda``, ``npu`` (torch_npu) and ``mlu`` (torch_mlu);
* CuPy: ``cupy.get_default_memory_pool().set_limit(size=limit_bytes)``.

This is cooperative: it caps what these allocators hand out, not what a process could take
through another library. MIG instances and MPS memory limits are the hard caps.

>>> apply_memory_cap({}).limit_mib is None
True
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from flexlab.providers.base import MIB

log = logging.getLogger(__name__)

LIMIT_VAR = "FLEXLAB_MEMORY_LIMIT_MIB"
_TORCH_BACKENDS = ("cuda", "npu", "mlu")

Importer = Callable[[str], "ModuleType | None"]


@dataclass(frozen=True)
class MemoryCapResult:
    """What was capped (``applied``) and what was not, with the reason (``skipped``)."""

    limit_mib: int | None
    applied: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


def import_if_present(name: str) -> ModuleType | None:
    """The module, or None when it is not installed (or fails to import, logged)."""
    try:
        if importlib.util.find_spec(name) is None:
            return None
        return importlib.import_module(name)
    except ImportError as exc:
        log.info("%s is installed but does not import: %s", name, exc)
        return None


def _cap_torch(torch: Any, limit_bytes: int) -> tuple[list[str], list[str]]:
    applied: list[str] = []
    skipped: list[str] = []
    for backend in _TORCH_BACKENDS:
        mod = getattr(torch, backend, None)
        setter = getattr(mod, "set_per_process_memory_fraction", None)
        if mod is None or setter is None:
            continue
        if not mod.is_available():
            skipped.append(f"torch.{backend}: no device visible")
            continue
        total = int(mod.get_device_properties(0).total_memory)
        if total <= 0:
            skipped.append(f"torch.{backend}: device reports no memory")
            continue
        fraction = min(1.0, limit_bytes / total)
        setter(fraction, 0)
        applied.append(f"torch.{backend} fraction={fraction:.4f} of {total // MIB} MiB")
    return applied, skipped


def apply_memory_cap(
    env: Mapping[str, str] | None = None,
    *,
    limit_mib: int | None = None,
    importer: Importer = import_if_present,
) -> MemoryCapResult:
    """Cap PyTorch's and CuPy's device allocators to the slice's memory.

    ``limit_mib`` wins over ``env[FLEXLAB_MEMORY_LIMIT_MIB]``; without either nothing is
    capped. Frameworks that are not installed are skipped, never imported needlessly.
    """
    source = os.environ if env is None else env
    if limit_mib is None:
        raw = source.get(LIMIT_VAR)
        if raw is None:
            return MemoryCapResult(None, skipped=(f"{LIMIT_VAR} not set",))
        try:
            limit_mib = int(raw)
        except ValueError:
            log.warning("ignoring %s=%r: not a whole number of MiB", LIMIT_VAR, raw)
            return MemoryCapResult(None, skipped=(f"{LIMIT_VAR}={raw!r} is not a number",))
    if limit_mib <= 0:
        return MemoryCapResult(None, skipped=(f"limit {limit_mib} MiB is not positive",))
    limit_bytes = limit_mib * MIB
    applied: list[str] = []
    skipped: list[str] = []

    torch = importer("torch")
    if torch is None:
        skipped.append("torch: not installed")
    else:
        done, not_done = _cap_torch(torch, limit_bytes)
        applied += done
        skipped += not_done

    cupy: Any = importer("cupy")
    if cupy is None:
        skipped.append("cupy: not installed")
    else:
        cupy.get_default_memory_pool().set_limit(size=limit_bytes)
        applied.append(f"cupy pool limit={limit_mib} MiB")

    for line in applied:
        log.info("memory cap: %s", line)
    return MemoryCapResult(limit_mib, tuple(applied), tuple(skipped))
