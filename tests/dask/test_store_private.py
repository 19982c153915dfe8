"""The lease store keeps private leases and their workers' credentials, owner-readable only,
and reads a file written before private leases existed."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from flexlab_dask.store import LeaseStore, restore

from flexlab.core.pool import LeaseInfo
from flexlab.core.request import parse_request

CREDS = {"scheduler": "tls://10.0.0.5:40001", "ca": "CA", "cert": "CERT", "key": "KEY"}


def lease(lease_id: str, private: str | None) -> LeaseInfo:
    return LeaseInfo(
        lease_id=lease_id,
        owner="ana",
        request=parse_request("t4:0.5", owner="ana"),
        ttl_s=3600.0,
        priority=0,
        created=1.0,
        expires_at=3601.0,
        state="active",
        placed_on=("gpu-host", ("gpu-host/t4#0",), 0),
        private=private,
    )


def test_private_leases_and_credentials_round_trip_and_are_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = LeaseStore(path)
    store.save(lease("L1", CREDS["scheduler"]))
    store.save_private("L1", CREDS)
    store.save(lease("L2", None))
    store.close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for side in tmp_path.glob("state.sqlite-*"):  # WAL and shared-memory files
        assert stat.S_IMODE(side.stat().st_mode) == 0o600, side

    again = LeaseStore(path)
    rows = {s.lease_id: s for s in again.live()}
    assert rows["L1"].private == CREDS["scheduler"]
    assert rows["L2"].private is None
    assert restore(rows["L1"]).private == CREDS["scheduler"]
    assert again.private_credentials() == {"L1": CREDS}
    again.forget(["L1"])
    assert again.private_credentials() == {}
    assert [s.lease_id for s in again.live()] == ["L2"]
    again.close()


def test_a_file_from_before_private_leases_is_read_and_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """CREATE TABLE leases (lease_id TEXT PRIMARY KEY, owner TEXT NOT NULL, spec TEXT NOT NULL,
        ttl_s REAL NOT NULL, priority INTEGER NOT NULL, created REAL NOT NULL,
        expires_at REAL NOT NULL, state TEXT NOT NULL, placed_on TEXT);
        INSERT INTO leases VALUES ('L7', 'bo', 't4:0.5', 60, 0, 1, 61, 'active', NULL);"""
    )
    db.commit()
    db.close()
    path.chmod(0o644)

    store = LeaseStore(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (row,) = store.live()
    assert (row.lease_id, row.owner, row.private) == ("L7", "bo", None)
    store.save(lease("L8", "tls://h:1"))
    assert {s.lease_id: s.private for s in store.live()} == {"L7": None, "L8": "tls://h:1"}
    store.close()
