"""Notebook and Voila glue: connect to a pool, show a dashboard live, build dashboard.ipynb.

>>> pool = connect()                 # $FLEXLAB_SCHEDULER, else an embedded mock pool  # doctest: +SKIP
>>> dash = Dashboard(PoolClient(pool.client)); show(dash); dash.start()             # doctest: +SKIP

In Voila, ``push_notebook`` cannot update a plot (no comm target there); the dashboard's root
is wrapped in ``jupyter_bokeh.BokehModel`` and an asyncio task on the kernel's loop changes
the Bokeh sources, which the widget syncs to the page. BokehJS is loaded inline (no CDN).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

#: Environment variable with the scheduler address (set by ``flexlab dashboard`` and Binder).
SCHEDULER_ENV = "FLEXLAB_SCHEDULER"
#: BokehJS bundles the dashboard uses, inlined in the page (the CDN may be out of reach). WebGL
#: and MathJax are left out: 2 MB less for the page to load and parse.
BOKEH_COMPONENTS = ("bokeh", "bokeh-widgets", "bokeh-tables")


@dataclass
class PoolConnection:
    """A Dask client on a flexlab pool, and what was started for it here (if anything)."""

    client: Any
    address: str
    cluster: Any = None
    load: Any = None
    title: str = "flexlab pool"
    extras: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        if self.load is not None:
            self.load.stop()
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def connect(address: str | None = None, *, synthetic_load: bool = True) -> PoolConnection:
    """Connect to ``address`` (default ``$FLEXLAB_SCHEDULER``); with neither, start an
    embedded mock pool (``FlexCluster``) and, if ``synthetic_load``, a steady load on it."""
    from distributed import Client

    make_client: Any = Client  # distributed is untyped
    address = address or os.environ.get(SCHEDULER_ENV) or None
    if address:
        from flexlab.tls import client_security

        # a tls:// pool: the client certificate of $FLEXLAB_TLS (set by `flexlab dashboard --tls`)
        security = client_security() if address.startswith("tls://") else None
        client = make_client(address, timeout="30s", security=security)
        return PoolConnection(client, address, title=f"flexlab pool at {address}")
    from flexlab_dask import FlexCluster

    from flexlab.dashboard.load import SyntheticLoad

    cluster = FlexCluster()
    client = make_client(cluster)
    load = SyntheticLoad(client).start() if synthetic_load else None
    return PoolConnection(
        client,
        cluster.scheduler_address,
        cluster=cluster,
        load=load,
        title="flexlab pool (embedded mock devices)",
    )


def load_bokehjs() -> None:
    """Put BokehJS on the page, inline (the CDN may be out of reach), once.

    ``bokeh.io.output_notebook`` publishes the whole bundle twice (as JavaScript for the classic
    notebook and as Bokeh's load MIME type for JupyterLab): 4 MB for the page to take in.
    Here only the JavaScript is published (Voila runs it; it has no renderer for the load MIME
    type), without the WebGL and MathJax bundles: 2 MB.
    """
    from bokeh.core.templates import AUTOLOAD_NB_JS
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.resources import Resources
    from IPython.display import publish_display_data

    resources = Resources(mode="inline", components=list(BOKEH_COMPONENTS))  # type: ignore[arg-type]
    bundle = bundle_for_objs_and_resources(None, resources)
    js = AUTOLOAD_NB_JS.render(bundle=bundle, elementid=None, force=True, timeout=5000, register_mime=False)
    publish: Any = publish_display_data  # IPython is untyped
    publish({"application/javascript": js})


def show(dashboard: Any) -> Any:
    """Display ``dashboard.root`` as a live widget (BokehModel) and return the widget."""
    from IPython.display import display
    from jupyter_bokeh import BokehModel

    load_bokehjs()
    widget = BokehModel(dashboard.root)
    show_widget: Any = display  # IPython is untyped
    show_widget(widget)
    return widget


DASHBOARD_MARKDOWN = """\
### Reading this dashboard

* **Pool map**: one box per device, grouped by host. The top strip is the device model (green:
  NVIDIA, red/orange: Huawei Ascend, indigo: Cambricon); below it each slice is as wide as its
  compute share, filled with its owner's colour (blue-grey: shared), the dark part rising with
  its utilisation. Hatched: not carved. Hover for details; switch to colour by utilisation.
* **Utilisation**: busy share and memory over the last 10 minutes, by vendor, by model and in total.
* **Stranded**: idle compute (uncarved, or headroom in shared slices) that none of the request
  shapes seen in the last 5 minutes fits; the expected fragment weighs each shape by how often it comes.
* **Queue**: what waits now and why; arrivals per request class (a forecast, when the pool
  publishes one, is drawn dashed).
* **Leases** by user (dark: busy, light: held but idle) and the **event log**, repeats folded.

It reads the scheduler plugin's collected telemetry (once a second), never the hardware.
"""

DASHBOARD_CODE = """\
import flexlab
from flexlab.dashboard import Dashboard, connect, show

# $FLEXLAB_SCHEDULER (set by `flexlab dashboard` and Binder), else an embedded mock pool with a load
pool = connect()
dash = Dashboard(flexlab.PoolClient(pool.client), title=pool.title)
dash.refresh()
show(dash)
task = dash.start(interval=1.0)  # live: refresh once a second on the kernel's event loop
"""


def dashboard_notebook() -> Any:
    """The Voila app ``notebooks/dashboard.ipynb`` (committed without outputs)."""
    import nbformat

    v4: Any = nbformat.v4  # nbformat is untyped
    nb = v4.new_notebook()
    # No trailing newline in a cell: what ruff format leaves in notebooks.
    nb.cells = [v4.new_code_cell(DASHBOARD_CODE.rstrip()), v4.new_markdown_cell(DASHBOARD_MARKDOWN.rstrip())]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells[0].id, nb.cells[1].id = "dashboard", "reading-it"  # stable ids: the file never churns
    return nb
