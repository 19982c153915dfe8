"""Leases on disk: an embedded SQLite file, so a restarted scheduler gets them back.

One row per lease (owner, request, TTL, priority, state and where its slice was). Writes
are small and synchronous; the file uses WAL so readers (``flexlab status``) never block
the scheduler.

A private lease also keeps the credentials its worker joins its owner's scheduler with
(``flexlab_dask.private``), so that a restarted scheduler can start that worker again if it
must. The scheduler holds them in memory anyway; on disk the file is readable by its owner
only (mode 0600, like its WAL files, which SQLite creates with the database's mode), and a
lease's credentials go when the lease is forgotten.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flexlab.core.pool import LeaseInfo
from flexlab.core.request import parse_request

logger = logging.getLogger("flexlab.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    lease_id   TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    spec       TEXT NOT NULL,
    ttl_s      REAL NOT NULL,
    priority   INTEGER NOT NULL,
    created    REAL NOT NULL,
    expires_at REAL NOT NULL,
    state      TEXT NOT NULL,
    placed_on  TEXT
);
CREATE TABLE IF NOT EXISTS private (lease_id TEXT PRIMARY KEY, credentials TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class StoredLease:
    lease_id: str
    owner: str
    spec: str
    ttl_s: float
    priority: int
    created: float
    expires_at: float
    state: str
    placed_on: tuple[str, tuple[str, ...], int] | None
    #: A private lease: its owner's scheduler address.
    private: str | None = None


class LeaseStore:
    """Leases of one scheduler, in ``path`` (":memory:" for tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            os.chmod(self.path, 0o600)  # a file from before private leases: owner only now
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(leases)")}
        if "private" not in columns:  # a file written before private leases
            self._db.execute("ALTER TABLE leases ADD COLUMN private TEXT")

    def save(self, lease: LeaseInfo) -> None:
        placed = (
            json.dumps([lease.placed_on[0], list(lease.placed_on[1]), lease.placed_on[2]])
            if lease.placed_on
            else None
        )
        self._db.execute(
            "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                lease.lease_id,
                lease.owner,
                lease.request.spec or lease.request.describe(),
                lease.ttl_s,
                lease.priority,
                lease.created,
                lease.expires_at,
                lease.state,
                placed,
                lease.private,
            ),
        )

    def save_private(self, lease_id: str, credentials: dict[str, str]) -> None:
        """The credentials of a private lease's worker (kept until the lease is forgotten)."""
        self._db.execute("INSERT OR REPLACE INTO private VALUES (?, ?)", (lease_id, json.dumps(credentials)))

    def private_credentials(self) -> dict[str, dict[str, str]]:
        """Lease id -> its worker's credentials, for the private leases kept."""
        out: dict[str, dict[str, str]] = {}
        for lease_id, text in self._db.execute("SELECT lease_id, credentials FROM private"):
            creds = json.loads(text)
            if isinstance(creds, dict):
                out[str(lease_id)] = {str(k): str(v) for k, v in creds.items()}
        return out

    def load(self) -> Iterator[StoredLease]:
        for row in self._db.execute("SELECT * FROM leases ORDER BY created"):
            placed = None
            if row[8]:
                h, devs, start = json.loads(row[8])
                placed = (str(h), tuple(str(d) for d in devs), int(start))
            yield StoredLease(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], placed, row[9])

    def live(self) -> list[StoredLease]:
        return [s for s in self.load() if s.state not in ("released", "expired")]

    def forget(self, lease_ids: list[str]) -> None:
        """Delete the rows of leases the pool forgot (ended past their retention)."""
        self._db.executemany("DELETE FROM leases WHERE lease_id = ?", [(x,) for x in lease_ids])
        self._db.executemany("DELETE FROM private WHERE lease_id = ?", [(x,) for x in lease_ids])

    def save_hosts(self, names: list[str]) -> None:
        """The hosts registered now: a restarted scheduler expects them back."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('hosts', ?)", (json.dumps(sorted(names)),))

    def hosts(self) -> list[str]:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'hosts'").fetchone()
        return [str(x) for x in json.loads(row[0])] if row else []

    def close(self) -> None:
        self._db.close()


def restore(stored: StoredLease) -> LeaseInfo:
    """A LeaseInfo from a stored row, waiting to be placed again."""
    request = parse_request(stored.spec, owner=stored.owner, priority=stored.priority)
    return LeaseInfo(
        lease_id=stored.lease_id,
        owner=stored.owner,
        request=request,
        ttl_s=stored.ttl_s,
        priority=stored.priority,
        created=stored.created,
        expires_at=stored.expires_at,
        state="recovering",
        placed_on=stored.placed_on,
        private=stored.private,
        reason="scheduler restarted; waiting for its host",
        # its TTL keeps the end it had (a lease that was never active gets it anew)
        active_since=stored.created if stored.state != "pending" else None,
    )
