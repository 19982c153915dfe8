"""flexlab: share scarce AI accelerators from Python, Dask and Jupyter.

Slice GPUs and NPUs into fractional units, pool them across machines and place work on
them. The pure core lives in :mod:`flexlab.core`; see the README for the commands.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
