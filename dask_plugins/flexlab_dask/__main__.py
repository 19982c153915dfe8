"""``python -m flexlab_dask SCHEDULER --slice JSON``: one slice worker (host agents start these).

A module of its own so that running it does not import :mod:`flexlab_dask.worker` twice (the
package imports it; ``python -m flexlab_dask.worker`` made runpy warn about that).
"""

from __future__ import annotations

import sys

from flexlab_dask.worker import main

if __name__ == "__main__":
    sys.exit(main())
