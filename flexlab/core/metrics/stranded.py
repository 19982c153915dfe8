"""Idle and stranded accelerator compute of the live pool, per vendor and model.

* **Idle** compute comes in holes: a device's compute not carved into any slice (on a
  MIG / vNPU device: only while one of its profiles can still be carved) and the headroom
  of each live shared slice (its compute minus what bound tasks hold). Leases and warm
  slices are held, not idle.
* A hole is **stranded** when none of the request shapes the pool expects fits it: the
  placement policy's learned shapes (``LivePolicy.distribution``), or, for a policy that
  learns none, its cold-start prior (whole, three-quarter, half and quarter devices). A
  shape fits when it accepts the device's model and the hole has its compute (a whole
  device for a multi-device shape) and the same share of the device's memory.

>>> from flexlab.core.pool import SlicePool
>>> from flexlab.core.topology import DeviceSpec, HostSpec
>>> pool = SlicePool(carve_on_register=False)
>>> pool.register_host(HostSpec("h", 8000, 65536, (DeviceSpec("t4", 0),)))
>>> idle_and_stranded(pool)
{('nvidia', 't4'): (1000, 0)}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flexlab.core.placement.fragmentation import Shape
from flexlab.core.placement.live import PRIOR_MIX
from flexlab.core.pool.model import LIVE

if TYPE_CHECKING:
    from flexlab.core.pool import SlicePool

_PRIOR = tuple(Shape(0, milli, 1) for milli, _ in PRIOR_MIX)


def expected_shapes(pool: SlicePool) -> tuple[Shape, ...]:
    """The accelerator shapes the pool's policy expects (its prior when it learns none)."""
    dist = pool.live_policy.distribution
    shapes = dist.accelerator_only().shapes if dist is not None else ()
    return shapes or _PRIOR


def idle_and_stranded(pool: SlicePool) -> dict[tuple[str, str], tuple[int, int]]:
    """(vendor, model) -> (idle, stranded) compute in milli-devices."""
    arr = pool.ledger.pool
    led = pool.ledger
    model: list[int] = []
    #: What a request could use of each hole (a profile device: its largest free profile)
    #: and what the hole holds idle.
    comp: list[int] = []
    counted: list[int] = []
    mem: list[int] = []
    devmem: list[int] = []
    for i in np.flatnonzero(arr.dev_schedulable & (arr.dev_compute_free > 0)).tolist():
        free_c = int(arr.dev_compute_free[i])
        usable = free_c
        if i in arr.profile_free:
            if not arr.profile_free[i]:
                continue  # rounding residue of a fully carved layout, not capacity
            profiles = arr.model_profiles[int(arr.dev_model[i])] if arr.model_profiles else {}
            sizes = [profiles[p][0] for p in arr.profile_free[i] if p in profiles]
            usable = min(free_c, max(sizes)) if sizes else free_c
        model.append(int(arr.dev_model[i]))
        comp.append(usable)
        counted.append(free_c)
        mem.append(int(arr.dev_mem_free[i]))
        devmem.append(int(arr.dev_mem_total[i]))
    for s in pool.slices.values():
        if s.lease_id is not None or s.warm_for is not None or s.state not in LIVE:
            continue
        head = s.compute_milli - max(0, s.load_milli)
        if head <= 0:
            continue
        for did in s.devices:
            i = led.device_index(did)
            if not arr.dev_schedulable[i]:
                continue
            model.append(int(arr.dev_model[i]))
            comp.append(head)
            counted.append(head)
            mem.append(max(0, s.memory_mib - s.memory_used_mib))
            devmem.append(int(arr.dev_mem_total[i]))
    out: dict[tuple[str, str], tuple[int, int]] = {}
    if not comp:
        return out
    m = np.asarray(model)
    c = np.asarray(comp, dtype=np.int64)
    mm = np.asarray(mem, dtype=np.int64)
    dm = np.asarray(devmem, dtype=np.int64)
    fits = np.zeros(len(comp), dtype=bool)
    keys = arr.model_keys
    for shape in expected_shapes(pool):
        need = 1000 if shape.devices > 1 else shape.compute_milli
        ok = (c >= need) & (mm >= need * dm // 1000)
        if shape.models:
            ok &= np.isin(m, [k for k, key in enumerate(keys) if key in shape.models])
        fits |= ok
    idle = np.asarray(counted, dtype=np.int64)
    for k, key in enumerate(keys):
        sel = m == k
        if sel.any():
            out[(arr.model_vendor[k], key)] = (int(idle[sel].sum()), int(idle[sel & ~fits].sum()))
    return out
