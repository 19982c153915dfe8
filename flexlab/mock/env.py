"""The mock's visibility and limit variables: what a mock slice worker process is given.

A real slice worker is pinned by its vendor's variables (``CUDA_VISIBLE_DEVICES``,
``ASCEND_RT_VISIBLE_DEVICES``...); a mock slice worker gets these instead, and
:func:`flexlab.mock.current_slice` reads them when no Dask slice plugin is present.

>>> env = slice_env("s1", "a100-40gb", 250, 8192, "host-a/0")
>>> env["FLEXLAB_MOCK_SHARE"], env["FLEXLAB_MOCK_MEMORY_MIB"]
('250', '8192')
>>> context_from_env(env).share
0.25
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flexlab.core.errors import InvalidRequest
from flexlab.mock.model import DEFAULT_SPEEDS, SliceContext, SpeedTable

#: Catalog key (or alias) of the mock device, e.g. ``v100s-32gb``, ``ascend-910b3``.
DEVICE_VAR = "FLEXLAB_MOCK_DEVICE"
#: Id of the physical mock device; slices with one id share its accounting in a process.
DEVICE_ID_VAR = "FLEXLAB_MOCK_DEVICE_ID"
#: The slice's compute share in milli-units, 1..1000 (1000 = the whole device).
SHARE_VAR = "FLEXLAB_MOCK_SHARE"
#: The slice's memory limit in MiB; allocations beyond it raise ``MockOutOfMemory``.
MEMORY_VAR = "FLEXLAB_MOCK_MEMORY_MIB"
#: The slice's id (also names its Dask resource, ``flexlab-slice-<id>``).
SLICE_ID_VAR = "FLEXLAB_SLICE_ID"

#: Every variable, in the order :func:`slice_env` writes them.
ALL_VARS = (DEVICE_VAR, DEVICE_ID_VAR, SHARE_VAR, MEMORY_VAR, SLICE_ID_VAR)


def slice_env(
    slice_id: str, device_model_key: str, share_milli: int, memory_mib: int, device_id: str
) -> dict[str, str]:
    """The variables that pin a worker process to one mock slice (validated first)."""
    ctx = SliceContext(
        share_milli=share_milli,
        memory_mib=memory_mib,
        model_key=device_model_key,
        device_id=device_id,
        slice_id=slice_id,
    )
    return {
        DEVICE_VAR: ctx.model_key,
        DEVICE_ID_VAR: ctx.device_id,
        SHARE_VAR: str(ctx.share_milli),
        MEMORY_VAR: str(ctx.memory_mib),
        SLICE_ID_VAR: ctx.slice_id,
    }


def context_from_env(
    environ: Mapping[str, str] | None = None, *, speed: SpeedTable = DEFAULT_SPEEDS
) -> SliceContext | None:
    """The slice the variables describe; None when ``FLEXLAB_MOCK_DEVICE`` is unset.

    A partial or malformed set raises ``InvalidRequest`` naming the variable.
    """
    env = os.environ if environ is None else environ
    if not env.get(DEVICE_VAR):
        return None
    missing = [name for name in ALL_VARS if not env.get(name)]
    if missing:
        raise InvalidRequest(
            "mock slice environment",
            f"{DEVICE_VAR} set but {', '.join(missing)} unset",
            "all of " + ", ".join(ALL_VARS),
        )
    return SliceContext(
        share_milli=_int(env, SHARE_VAR),
        memory_mib=_int(env, MEMORY_VAR),
        model_key=env[DEVICE_VAR],
        device_id=env[DEVICE_ID_VAR],
        slice_id=env[SLICE_ID_VAR],
        speed=speed,
    )


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise InvalidRequest(name, env[name], "an integer") from None
