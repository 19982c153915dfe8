"""The lease records the plugin keeps: written to disk only when they change."""

from __future__ import annotations

from typing import Any

from flexlab_dask import FlexScheduler

from flexlab.core.request import parse_request
from flexlab.core.topology import DeviceSpec, HostSpec

HOST = HostSpec("gpu-h", 32_000, 128 * 1024, (DeviceSpec("t4", 0), DeviceSpec("t4", 1)))


class CountingStore:
    def __init__(self) -> None:
        self.saved: list[str] = []

    def save(self, lease: Any) -> None:
        self.saved.append(lease.lease_id)


def test_only_changed_leases_are_written() -> None:
    plugin = FlexScheduler(state_file="", hi=False)
    store = CountingStore()
    plugin.store = store  # type: ignore[assignment]
    plugin.pool.register_host(HOST)
    leases = [plugin.pool.create_lease(parse_request("gpu:0.25"), owner=f"u{i}", ttl_s=600) for i in range(6)]
    plugin._persist()
    assert sorted(store.saved) == sorted(x.lease_id for x in leases)
    store.saved.clear()
    for _ in range(5):  # the loop persists every pass: nothing changed, nothing written
        plugin._persist()
    assert store.saved == []
    plugin.pool.release_lease(leases[2].lease_id, "u2")
    plugin.pool.renew_lease(leases[4].lease_id, "u4", 1200)
    plugin._persist()
    assert sorted(store.saved) == sorted([leases[2].lease_id, leases[4].lease_id])
