"""The Dask path: kernels in a real in-process cluster find their slice through the worker plugin."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from distributed import Client, LocalCluster, WorkerPlugin

from flexlab.mock import (
    PLUGIN_NAME,
    MockOutOfMemory,
    NotOnMockSlice,
    SliceContext,
    current_slice,
    kernel,
    slice_resource,
    worker_context,
)

SLICE = SliceContext(
    share_milli=500, memory_mib=4096, model_key="a100-40gb", device_id="host/0", slice_id="s0"
)


class SlicePlugin(WorkerPlugin):
    """The least a slice worker's plugin must expose: its name and ``.context``."""

    name = PLUGIN_NAME

    def __init__(self, context: SliceContext) -> None:
        self.context = context


def _granted_share() -> float:
    return current_slice().task_share


def test_kernel_on_a_dask_slice_worker() -> None:
    res = slice_resource("s0")
    with (
        LocalCluster(
            processes=False,
            n_workers=1,
            threads_per_worker=2,
            dashboard_address=None,
            host="127.0.0.1",
            protocol="tcp",  # with processes=False the default inproc transport rejects a host
            resources={res: 500},
            # No dashboard; its bare HTTP server on a free local port, not 8787 (shared machine).
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        Client(cluster) as client,
    ):
        # Without the plugin (and no FLEXLAB_MOCK_* variables) a task is not on a slice.
        with pytest.raises(NotOnMockSlice, match="not running on a flexlab mock slice"):
            client.submit(current_slice, pure=False).result()

        client.register_plugin(SlicePlugin(SLICE))

        # A task granted 250 milli of the 500-milli slice runs at 0.25 of the device ...
        granted = client.submit(kernel, 0.012, 0.5, "1GiB", resources={res: 250}, pure=False).result()
        assert (granted.slice_id, granted.device_id, granted.model_key) == ("s0", "host/0", "a100-40gb")
        assert (granted.share, granted.used, granted.memory_mib) == (0.25, 0.25, 1024)
        assert granted.modelled_s == pytest.approx(0.012 / (2.4 * 0.25))
        assert granted.modelled_s <= granted.elapsed_s < granted.modelled_s + 0.1

        # ... one without a grant gets the whole slice.
        assert client.submit(_granted_share, pure=False).result() == 0.5

        # An out-of-memory error reaches the client with its sizes.
        with pytest.raises(MockOutOfMemory, match="tried to allocate 8192 MiB; slice has 4096 MiB total"):
            client.submit(kernel, 0.01, 0.5, "8GiB", pure=False).result()

    # In-process workers share this process's accounting, and everything was given back.
    dev = SLICE.device()
    assert (dev.memory_used(), dev.utilisation(), dev.running_tasks()) == (0, 0.0, 0)


@pytest.mark.parametrize(
    ("worker", "expected"),
    [
        (SimpleNamespace(plugins={PLUGIN_NAME: SimpleNamespace(context=SLICE)}), SLICE),
        (SimpleNamespace(plugins={}, flexlab_slice=SLICE), SLICE),
        (SimpleNamespace(plugins={PLUGIN_NAME: SimpleNamespace(context=None)}, flexlab_slice=SLICE), None),
        (SimpleNamespace(plugins={}), None),
    ],
    ids=["plugin", "attribute", "plugin-not-mock", "plain-worker"],
)
def test_worker_context(worker: object, expected: SliceContext | None) -> None:
    assert worker_context(worker) == expected


def test_worker_context_rejects_a_wrong_type() -> None:
    worker = SimpleNamespace(plugins={PLUGIN_NAME: SimpleNamespace(context={"slice_id": "s0"})})
    with pytest.raises(
        TypeError, match=r"'flexlab-slice' \.context is a dict; expected flexlab\.mock\.SliceContext"
    ):
        worker_context(worker)
