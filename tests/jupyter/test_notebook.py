"""The notebook side: ``%load_ext flexlab`` / ``%flex``, ``Lease.attach``, ``LeasePicker``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from distributed import Client
from nbclient import NotebookClient

import flexlab
from flexlab.client import Lease, PoolClient
from flexlab.core.errors import InvalidRequest, NotOwner, UnknownName
from flexlab.notebook import FlexMagicsCore, PoolStatus, add_memory, compose_request, where


@pytest.fixture
def client(pool_address: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """The default Dask client on the session's pool, and a user of our own."""
    monkeypatch.setenv("FLEXLAB_USER", "nb-user")
    with Client(pool_address) as c:
        yield c
        for x in PoolClient(c).leases(owner="nb-user"):
            Lease(c, x).release()


COMPOSE = [
    (("npu",), {"compute": 0.25, "memory": "16GiB"}, "npu:25%,16GiB"),
    (("a100",), {"profile": "1g.10gb"}, "a100:1g.10gb"),
    (("gpu",), {"compute": "30%", "memory": 8}, "gpu:30%,8GiB"),
    (("any",), {}, "any"),
    (("t4",), {"memory": 4.5}, "t4:4.5GiB"),
]


@pytest.mark.parametrize(("args", "kwargs", "spec"), COMPOSE, ids=[c[2] for c in COMPOSE])
def test_compose_request(args: tuple[str], kwargs: dict[str, Any], spec: str) -> None:
    assert compose_request(*args, **kwargs) == spec
    assert flexlab.parse_request(spec).describe() == spec


def test_compose_refuses_share_and_profile() -> None:
    with pytest.raises(InvalidRequest) as info:
        compose_request("a100", compute=0.5, profile="1g.10gb")
    assert info.value.field == "compute"


def test_add_memory() -> None:
    assert add_memory("gpu:0.25", "8GiB") == "gpu:0.25,8GiB"
    assert add_memory("gpu", "8GiB") == "gpu:8GiB"
    assert add_memory("gpu:0.25", None) == "gpu:0.25"


def test_import_flexlab_does_not_import_ipython() -> None:
    code = "import sys, flexlab; flexlab.load_ipython_extension; assert 'IPython' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------ Lease.attach
def test_attach_to_a_lease_made_elsewhere(client: Client) -> None:
    made = flexlab.lease("mlu:0.2", ttl="10m", client=client)
    again = Lease.attach(made.lease_id)  # the default client and $FLEXLAB_USER
    assert (again.lease_id, again.owner, again.state) == (made.lease_id, "nb-user", "active")
    assert again.submit(where).result()["slice"] == made.info["slice_id"]
    with pytest.raises(NotOwner):
        Lease.attach(made.lease_id, owner="mallory")
    with pytest.raises(UnknownName):
        Lease.attach("L424242")
    made.release()
    assert Lease.attach(made.lease_id).state == "released"


# ------------------------------------------------------------------ %flex
def test_flex_magics(client: Client) -> None:
    ns: dict[str, Any] = {}
    flex = FlexMagicsCore(ns)
    made = flex.run("lease npu:0.25 --memory 8GiB --ttl 30m")
    assert ns["lease"] is made
    assert (made.state, made.info["request"], made.info["ttl_s"]) == ("active", "npu:0.25,8GiB", 1800)
    assert made.info["memory_mib"] >= 8192
    ran = made.submit(where).result()
    assert (ran["slice"], ran["model"]) == (made.info["slice_id"], "ascend-910b3")

    st = flex.run("status")
    assert isinstance(st, PoolStatus)
    assert made.lease_id in repr(st)
    assert "you" in repr(st)
    assert f"<td>{made.lease_id}</td>" in st._repr_html_()

    assert flex.run("explain a100:1g.10gb") == "a100:1g.10gb would land on nvidia-b/a100-80gb#1 as 1g.10gb"
    assert flex.run("explain npu:0.25,100GiB").startswith("npu:0.25,100GiB: UNRESOLVABLE")
    renewed = flex.run("renew --ttl 2h")
    assert renewed[0].info["ttl_s"] == 7200
    assert flex.run("release") == f"released {made.lease_id}"
    assert made.refresh()["state"] == "released"
    with pytest.raises(InvalidRequest) as info:
        flex.run("release")
    assert info.value.field == "lease id"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("lease", "%flex"),
        ("lease tpu:1", "selector"),
        ("lease npu:0.25 --ttl never", "ttl"),
        ("fly", "%flex"),
    ],
)
def test_flex_bad_input(client: Client, line: str, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        FlexMagicsCore().run(line)
    assert info.value.field == field


def test_flex_in_a_kernel(pool_address: str) -> None:
    """A real kernel: %load_ext flexlab finds the pool through $FLEXLAB_SCHEDULER."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext flexlab"),
        nbformat.v4.new_code_cell("%flex lease t4:0.5 --ttl 10m"),
        nbformat.v4.new_code_cell(
            "from flexlab.notebook import where\nlease.submit(where).result()['model']"
        ),
        nbformat.v4.new_code_cell("%flex status"),
        nbformat.v4.new_code_cell("%flex release"),
    ]
    env = {**os.environ, "FLEXLAB_SCHEDULER": pool_address, "FLEXLAB_USER": "kernel-user"}
    NotebookClient(nb, timeout=60, kernel_name="python3").execute(env=env)
    outputs = [c.outputs for c in nb.cells]
    assert "<Lease L" in outputs[1][0]["data"]["text/plain"]
    assert outputs[2][0]["data"]["text/plain"] == "'t4'"
    assert "Leases of kernel-user" in outputs[3][0]["data"]["text/html"]
    assert outputs[4][0]["text"].startswith("released L")


# ------------------------------------------------------------------ LeasePicker
def test_lease_picker(client: Client) -> None:
    from flexlab.widgets import LeasePicker

    picker = LeasePicker()
    # the device menu is the one the scheduler computed (the JupyterLab panel shows it too)
    menu = PoolClient(client).pool_state().menu
    assert list(picker.device.options) == [(c.label, c.value) for c in menu]
    values = [v for _, v in picker.device.options]
    assert {"any", "npu", "huawei", "a100-80gb", "mlu370-x8"} <= set(values)
    assert ("Huawei (2)", "huawei") in picker.device.options
    assert picker.device.value == "npu"

    picker.device.value = "a100-80gb"  # profile-sliced only
    assert picker.mode.value == "profile"
    assert "1g.10gb" in picker.profile.options
    picker.profile.value = "1g.10gb"
    assert picker.request == "a100-80gb:1g.10gb"
    assert "would land on nvidia-b/a100-80gb#1 as 1g.10gb" in picker.preview.value

    picker.device.value = "t4"
    picker.compute.value = 50
    picker.memory.value = 4
    assert picker.request == "t4:50%,4GiB"
    picker.memory.value = 100
    assert "can never fit" in picker.preview.value
    assert picker.submit.disabled
    picker.memory.value = 0

    made = picker.commit()
    assert made is not None
    assert picker.lease is made
    assert made.info["request"] == "t4:50%"
    assert made.lease_id in picker.leases_box.children[0].children[1].value
    picker.release(made.lease_id)
    assert made.refresh()["state"] == "released"
    assert "No leases" in picker.leases_box.children[0].value


def test_connect_finds_the_configured_pool(pool_address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import dask

    from flexlab.client import connect, scheduler_address

    monkeypatch.delenv("FLEXLAB_SCHEDULER", raising=False)
    with pytest.raises(ValueError, match="FLEXLAB_SCHEDULER"):
        connect()  # no client, nothing configured, no embedded pool asked for
    with dask.config.set({"flexlab.scheduler-address": pool_address}):
        assert scheduler_address() == pool_address
        with connect() as c:
            assert c.scheduler.address == pool_address
    monkeypatch.setenv("FLEXLAB_SCHEDULER", pool_address)
    c = connect()
    try:
        assert connect() is c  # the second call finds the first client as the default
    finally:
        c.close()
