"""The host agent's side of private leases: their workers join their owners' schedulers.

A private lease's start command carries its owner's scheduler and credentials
(``flexlab_dask.private``): the agent writes them 0600 into a folder of its own, starts the
slice's worker against that scheduler with the same environment as any slice worker (as
another system account with ``private_user``), tells the pool when the worker joined (the
pool cannot see it) and relays its telemetry. The folder is deleted as soon as the worker
has joined (it read its credentials when it started: files of the agent's system user are
readable by every slice worker of the host running as it), at the latest when the worker
stops. When the pool stops it, the agent first tells the owner's scheduler why (so that the
owner's futures fail with that reason instead of waiting), then stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Worker
from distributed.comm.core import CommClosedError
from distributed.core import rpc

from flexlab.core.errors import InvalidRequest
from flexlab.core.topology import HostSpec
from flexlab_dask.worker import worker_kwargs

logger = logging.getLogger("flexlab.agent")


@dataclass
class PrivateRun:
    """A private lease's worker: its owner's scheduler and the folder of its credentials."""

    lease_id: str
    scheduler: str
    folder: Path
    #: How the agent reaches the owner's scheduler (made while the folder exists).
    connection_args: dict[str, Any] = field(default_factory=dict)
    #: The worker's scratch folder when it runs as another account (deleted when it stops).
    workdir: Path | None = None
    #: The worker's address once it joined its owner's scheduler.
    address: str | None = None
    watch: asyncio.Task[None] | None = None
    reports: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def tls(self) -> str | None:
        return str(self.folder) if self.scheduler.startswith("tls://") else None


@dataclass
class Running:
    """A slice worker an agent started: in this process, or a process of its own."""

    cmd: dict[str, Any]
    worker: Worker | None = None
    process: subprocess.Popen[bytes] | None = None
    private: PrivateRun | None = None


class PrivateWorkers:
    """What :class:`~flexlab_dask.agent.HostAgent` does for private leases' workers (a mixin:
    it reads the agent's attributes declared here)."""

    running: dict[str, Running]
    host: HostSpec
    _rpc: Any
    processes: bool
    listen_host: str
    telemetry_interval: float
    private_start_timeout: float
    private_user: str | None
    private_python: str | None
    on_stop: Callable[[str], None] | None

    async def _stop_worker(self, r: Running, reason: str) -> None:
        raise NotImplementedError

    def worker_argv(self, scheduler: str, spec: dict[str, Any], provider: str, tls: str | None) -> list[str]:
        raise NotImplementedError

    async def _start_private(self, sid: str, cmd: dict[str, Any], env: dict[str, str], provider: str) -> None:
        """Start the worker of a private lease's slice against its owner's scheduler, with
        the slice's environment and the credentials of ``cmd["private"]`` (in a 0600 folder
        of this agent's, deleted when the worker stops). Its watcher tells the pool when it
        joined, relays its telemetry and reports it if it dies."""
        creds = cmd["private"]
        spec = {k: v for k, v in cmd.items() if k != "private"}
        folder = Path(tempfile.mkdtemp(prefix=f"flexlab-private-{''.join(c for c in sid if c.isalnum())}-"))
        for name, key in (("ca.pem", "ca"), ("worker.pem", "cert"), ("worker-key.pem", "key")):
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(str(creds[key]))
        priv = PrivateRun(str(cmd.get("lease_id") or sid), str(creds["scheduler"]), folder)
        if priv.tls:
            from distributed import Security

            priv.connection_args = Security(
                tls_ca_file=str(folder / "ca.pem"),
                tls_client_cert=str(folder / "worker.pem"),
                tls_client_key=str(folder / "worker-key.pem"),
                require_encryption=True,
            ).get_connection_args("client")
        logger.info(
            "flexlab agent: slice %s is private lease %s's: its worker joins %s",
            sid,
            priv.lease_id,
            priv.scheduler,
        )
        try:
            account = self._private_account(cmd)
        except InvalidRequest as exc:
            shutil.rmtree(folder, ignore_errors=True)
            logger.warning("flexlab agent: private worker of slice %s not started: %s", sid, exc)
            with contextlib.suppress(OSError, CommClosedError, asyncio.TimeoutError):
                await self._rpc.flexlab_agent_private_lost(
                    host=self.host.name, slice_id=sid, reason=str(exc), started=False
                )
            return
        if self.processes:
            read_fd, write_fd = os.pipe()
            argv = [*self.worker_argv(priv.scheduler, spec, provider, priv.tls), "--report-fd", str(write_fd)]
            # Not the pool's TLS folder nor its address: the worker belongs to its owner.
            base = {k: v for k, v in os.environ.items() if k not in ("FLEXLAB_TLS", "FLEXLAB_SCHEDULER")}
            as_user: dict[str, Any] = {}
            if account is not None:
                priv.workdir = Path(tempfile.mkdtemp(prefix=f"flexlab-private-{priv.lease_id}-work-"))
                for path in (folder, *folder.iterdir(), priv.workdir):
                    os.chown(path, account.pw_uid, account.pw_gid)
                base.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
                base["DASK_TEMPORARY_DIRECTORY"] = str(priv.workdir)
                argv[0] = self.private_python or sys.executable
                as_user = {
                    "user": account.pw_uid,
                    "group": account.pw_gid,
                    "extra_groups": [],
                    "cwd": priv.workdir,
                }
            try:
                proc = subprocess.Popen(
                    argv, env={**base, **env}, stdin=subprocess.DEVNULL, pass_fds=(write_fd,), **as_user
                )
            finally:
                os.close(write_fd)
            run = Running(spec, process=proc, private=priv)
            self.running[sid] = run
            priv.watch = asyncio.create_task(self._watch_private(sid, run, read_fd))
        else:
            kwargs = worker_kwargs(
                spec,
                provider=provider,
                interval=self.telemetry_interval,
                env=env,
                report=lambda msg: self._private_message(sid, priv, msg),
            )
            if priv.tls:
                from flexlab.tls import pool_security

                kwargs["security"] = pool_security(priv.tls, worker="worker")
            w = Worker(priv.scheduler, host=self.listen_host, **kwargs)
            run = Running(spec, worker=w, private=priv)
            self.running[sid] = run
            priv.watch = asyncio.create_task(self._watch_private(sid, run, None))

    def _private_account(self, cmd: dict[str, Any]) -> Any:
        """The account (``pwd`` entry) a private lease's worker runs as, or None (the
        agent's own). ``InvalidRequest`` for one that does not exist, root, or the agent's."""
        if not self.private_user:
            return None
        import pwd

        name = self.private_user.replace("{owner}", str(cmd.get("owner") or ""))
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            raise InvalidRequest(
                "private worker account", name, f"a system account on host {self.host.name}"
            ) from None
        if account.pw_uid in (0, os.getuid()):
            raise InvalidRequest(
                "private worker account", name, "an account other than root and the agent's own"
            )
        return account

    def _private_message(self, sid: str, priv: PrivateRun, msg: dict[str, Any]) -> None:
        """A message of a private worker: ``ready`` (it joined) or ``telemetry``."""
        op = msg.get("op")
        if op == "ready" and isinstance(msg.get("worker"), str) and priv.address is None:
            priv.address = str(msg["worker"])
            # It holds its credentials in memory now: the files go (see the module's doc).
            shutil.rmtree(priv.folder, ignore_errors=True)
            logger.info("flexlab agent: private worker of slice %s joined at %s", sid, priv.address)
            self._report(priv, "flexlab_agent_private_started", slice_id=sid, worker=priv.address)
            return
        if op == "telemetry":
            self._report(
                priv,
                "flexlab_agent_private_telemetry",
                slice_id=sid,
                utilisation=msg.get("utilisation"),
                memory_used_mib=msg.get("memory_used_mib"),
            )

    def _report(self, priv: PrivateRun, handler: str, **kwargs: Any) -> None:
        """Send a report about a private worker to the pool without waiting for it."""

        async def send() -> None:
            try:
                await getattr(self._rpc, handler)(host=self.host.name, **kwargs)
            except (OSError, CommClosedError, asyncio.TimeoutError) as exc:
                logger.info("flexlab agent: %s not delivered (%s)", handler, exc)

        task = asyncio.ensure_future(send())
        priv.reports.add(task)
        task.add_done_callback(priv.reports.discard)

    async def _watch_private(self, sid: str, run: Running, read_fd: int | None) -> None:
        """Until the private worker of ``sid`` exits: wait for it to join its owner's
        scheduler (at most ``private_start_timeout``), relay what it reports, and tell the
        pool if it exits without being told to."""
        priv = run.private
        assert priv is not None
        why = ""
        if read_fd is not None:
            why = await self._read_reports(sid, priv, read_fd)
            proc = run.process
            assert proc is not None
            if not why:
                code = await asyncio.to_thread(proc.wait)
                why = f"its process exited with code {code}"
        else:
            w = run.worker
            assert w is not None
            try:
                await asyncio.wait_for(w.start(), self.private_start_timeout)
                self._private_message(sid, priv, {"op": "ready", "worker": w.address})
                await w.finished()
                why = "its worker closed"
            except asyncio.TimeoutError:
                why = f"it did not join {priv.scheduler} within {self.private_start_timeout:g} s"
            except (OSError, CommClosedError) as exc:
                why = f"it could not join {priv.scheduler}: {exc}"
        if self.running.get(sid) is not run:
            return  # stopped by a command: the pool knows
        del self.running[sid]
        logger.warning("flexlab agent: private worker of slice %s is gone: %s", sid, why)
        if self.on_stop is not None:
            self.on_stop(sid)
        await self._stop_worker(run, why)
        await self._forget_private(priv, watcher=False)
        try:
            await self._rpc.flexlab_agent_private_lost(
                host=self.host.name, slice_id=sid, reason=why, started=priv.address is not None
            )
        except (OSError, CommClosedError, asyncio.TimeoutError) as exc:
            # The pool stops the slice's worker when the agent re-registers without it.
            logger.info("flexlab agent: the loss of slice %s not reported (%s)", sid, exc)

    async def _read_reports(self, sid: str, priv: PrivateRun, read_fd: int) -> str:
        """Relay a private worker's JSON lines until its pipe closes (""), or the reason
        it failed to join in time."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb")
        )
        try:
            deadline = loop.time() + self.private_start_timeout
            while True:
                wait = None if priv.address is not None else max(0.0, deadline - loop.time())
                try:
                    line = await asyncio.wait_for(reader.readline(), wait)
                except asyncio.TimeoutError:
                    return f"it did not join {priv.scheduler} within {self.private_start_timeout:g} s"
                except ValueError:  # a line beyond the reader's limit: not the worker's
                    continue
                if not line:
                    return ""
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict):
                    self._private_message(sid, priv, msg)
        finally:
            transport.close()

    async def _tell_owner(self, priv: PrivateRun, reason: str, *, ended: bool) -> None:
        """Tell the owner's scheduler why its lease's worker stops (``flexlab.private``'s
        plugin fails the lease's work with it once ``ended``). A scheduler that does not
        answer within 5 s, or has no such handler, is not waited for."""
        owner = rpc(priv.scheduler, connection_args=priv.connection_args)
        try:
            await asyncio.wait_for(
                owner.flexlab_private_stopping(lease_id=priv.lease_id, reason=reason, ended=ended), 5
            )
        except (OSError, CommClosedError, asyncio.TimeoutError, ValueError, KeyError) as exc:
            logger.info("flexlab agent: the owner's scheduler of lease %s not told (%s)", priv.lease_id, exc)
        finally:
            await owner.close_rpc()

    async def _forget_private(self, priv: PrivateRun, *, watcher: bool = True) -> None:
        if watcher and priv.watch is not None and not priv.watch.done():
            priv.watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await priv.watch
        shutil.rmtree(priv.folder, ignore_errors=True)
        if priv.workdir is not None:
            shutil.rmtree(priv.workdir, ignore_errors=True)
