"""The host agent: registers a machine's devices and runs its slice workers.

One agent runs on every machine with accelerators (``flexlab agent tcp://HOST:PORT``). It
registers the host's devices with the scheduler plugin, then long-polls it for commands:
start a slice worker (a process pinned to the slice by its environment, or an in-process
worker for mock pools), stop one. If the scheduler goes away the agent keeps trying and
registers again when it is back, which is how a restarted scheduler gets its hosts and
leases back. Several agents pointed at one scheduler form one pool.

A private lease's start command carries its owner's scheduler and credentials
(``flexlab_dask.private``): the agent writes them 0600 into a folder of its own, starts the
slice's worker against that scheduler with the same environment as any slice worker, tells
the pool when the worker joined (the pool cannot see it) and relays its telemetry. The folder
is deleted as soon as the worker has joined (it read its credentials when it started: files
of the agent's system user are readable by every slice worker of the host), at the latest
when the worker stops. When the pool stops it, the agent first tells the owner's scheduler
why (so that the owner's futures fail with that reason instead of waiting), then stops it.
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
from flexlab_dask.state import host_to_dict
from flexlab_dask.worker import worker_kwargs

logger = logging.getLogger("flexlab.agent")

EnvFor = Callable[[dict[str, Any]], dict[str, str]]
#: The telemetry provider of a slice's workers, by its StartSlice command.
ProviderFor = Callable[[dict[str, Any]], str]


def mock_env(cmd: dict[str, Any]) -> dict[str, str]:
    """The mock's own variables for a slice (see ``flexlab.mock.env``)."""
    from flexlab.mock.env import slice_env

    return slice_env(
        str(cmd["slice_id"]),
        str(cmd["model"]),
        int(cmd["compute_milli"]),
        int(cmd["memory_mib"]),
        str(cmd["devices"][0]),
    )


@dataclass
class _Private:
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
class _Running:
    cmd: dict[str, Any]
    worker: Worker | None = None
    process: subprocess.Popen[bytes] | None = None
    private: _Private | None = None


class HostAgent:
    """Registers one host and runs its slice workers.

    ``processes=True`` starts each slice worker as its own process whose environment pins
    it to the slice; ``False`` runs them in this process (mock pools, Binder, tests).
    ``provider`` names the telemetry provider of every slice, or picks it per slice (a host
    with devices of several vendors). ``tls``: the folder ``flexlab certs`` wrote; the agent
    connects with its ``agent`` certificate and its slice workers with the ``worker`` one.
    """

    def __init__(
        self,
        scheduler: str,
        host: HostSpec,
        *,
        provider: str | ProviderFor = "mock",
        processes: bool = True,
        env_for: EnvFor | None = None,
        listen_host: str = "127.0.0.1",
        poll_timeout: float = 5.0,
        retry_interval: float = 0.5,
        telemetry_interval: float = 1.0,
        layouts: dict[str, list[str]] | None = None,
        on_stop: Callable[[str], None] | None = None,
        tls: str | None = None,
        private_start_timeout: float = 60.0,
        private_user: str | None = None,
        private_python: str | None = None,
    ) -> None:
        if private_user and not processes:
            raise InvalidRequest("private_user", private_user, "None where slice workers run in-process")
        self.scheduler = scheduler
        #: The system account a private lease's worker runs as (``{owner}`` is replaced by the
        #: lease's owner; None: the agent's own). Needs an agent running as root.
        self.private_user = private_user
        #: The Python that account runs (default: this one's; it must be able to run it).
        self.private_python = private_python
        #: Seconds a private lease's worker has to join its owner's scheduler; after that it
        #: is stopped and the lease ends with the reason.
        self.private_start_timeout = private_start_timeout
        self.tls = tls
        self.layouts = dict(layouts or {})
        self.on_stop = on_stop
        self.host = host
        self.provider_for: ProviderFor = (lambda _cmd: provider) if isinstance(provider, str) else provider
        self.processes = processes
        self.env_for = env_for or (mock_env if provider == "mock" else _no_env)
        self.listen_host = listen_host
        self.poll_timeout = poll_timeout
        #: Seconds between keep-alives while commands are carried out (from the scheduler's
        #: agent-timeout at registration).
        self.alive_interval = 5.0
        self.retry_interval = retry_interval
        self.telemetry_interval = telemetry_interval
        self.running: dict[str, _Running] = {}
        self.registered = asyncio.Event()
        self.registrations = 0
        self._rpc: Any = None
        self._connection_args: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._applying: asyncio.Future[None] | None = None

    async def start(self) -> HostAgent:
        connection_args: dict[str, Any] = {}
        if self.tls:
            from flexlab.tls import pool_security

            connection_args = pool_security(self.tls, client="agent").get_connection_args("client")
        self._connection_args = connection_args
        self._rpc = rpc(self.scheduler, connection_args=connection_args)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aenter__(self) -> HostAgent:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _register(self) -> None:
        resp = await self._rpc.flexlab_agent_register(
            host=host_to_dict(self.host),
            agent=f"{os.getpid()}",
            running=list(self.running),
            layouts=self.layouts,
        )
        if resp.get("status") != "OK":
            raise RuntimeError(f"flexlab agent: registration refused: {resp}")
        timeout = resp.get("agent_timeout")
        if isinstance(timeout, (int, float)) and timeout > 0:
            # heard from three times within the scheduler's agent-timeout while busy
            self.alive_interval = max(0.2, min(5.0, timeout / 3))
        self.registrations += 1
        self.registered.set()
        for sid, r in list(self.running.items()):
            if r.private is not None and r.private.address is not None:
                # a report lost while the scheduler was away: it is idempotent
                self._report(
                    r.private, "flexlab_agent_private_started", slice_id=sid, worker=r.private.address
                )
        logger.info("flexlab agent: host %s registered with %s", self.host.name, self.scheduler)

    async def _run(self) -> None:
        need_register = True
        while not self._closing:
            try:
                if need_register:
                    await self._register()
                    need_register = False
                self._reap()
                resp = await self._rpc.flexlab_agent_poll(
                    host=self.host.name, running=list(self.running), timeout=self.poll_timeout
                )
                if resp.get("status") == "unregistered":
                    need_register = True
                    continue
                cmds = resp.get("commands", [])
                alive = asyncio.ensure_future(self._say_alive()) if cmds else None
                try:
                    for cmd in cmds:
                        if self._closing:
                            return
                        # Shielded: a worker half started when the agent closes would keep
                        # the event loop from stopping; close() waits for the command instead.
                        self._applying = asyncio.ensure_future(self._apply(cmd))
                        await asyncio.shield(self._applying)
                finally:
                    if alive is not None:
                        alive.cancel()
            except (OSError, CommClosedError, asyncio.TimeoutError) as exc:
                if self._closing:
                    return
                if not need_register:
                    logger.warning("flexlab agent: lost the scheduler (%s); retrying", exc)
                need_register = True
                self.registered.clear()
                await asyncio.sleep(self.retry_interval)

    async def _say_alive(self) -> None:
        """While commands are carried out (no poll meanwhile), tell the scheduler every few
        seconds that this agent lives, so that a busy host is not taken for a lost one."""
        while True:
            await asyncio.sleep(self.alive_interval)
            try:
                await self._rpc.flexlab_agent_alive(host=self.host.name)
            except (OSError, CommClosedError, asyncio.TimeoutError):
                pass  # the scheduler is away: the poll after the commands finds out
            except Exception as exc:  # a scheduler of an older flexlab: it has no such handler
                logger.debug("flexlab agent: the scheduler did not take a keep-alive: %s", exc)
                return

    async def _apply(self, cmd: dict[str, Any]) -> None:
        if cmd["op"] == "start":
            await self.start_slice(cmd)
        elif cmd["op"] == "stop":
            await self.stop_slice(
                str(cmd["slice_id"]), str(cmd.get("reason", "")), lease_ended=bool(cmd.get("lease_ended"))
            )
        elif cmd["op"] == "retag":
            await self.retag_slice(cmd)

    async def retag_slice(self, cmd: dict[str, Any]) -> None:
        """Hand a running slice worker to the next lease (a recycled slice): it offers the
        command's resources and no longer the ended lease's; then tell the scheduler."""
        sid, addr = str(cmd["slice_id"]), str(cmd["worker"])
        if sid not in self.running:
            return  # stopped or died: the scheduler learns it from the worker's loss
        logger.info("flexlab agent: slice %s handed to the next lease", sid)
        try:
            w = rpc(addr, connection_args=self._connection_args)
            try:
                await w.flexlab_retag(resources=cmd["resources"], drop=list(cmd["drop"]))
            finally:
                await w.close_rpc()
        except (OSError, CommClosedError, asyncio.TimeoutError) as exc:
            logger.warning("flexlab agent: slice %s could not be handed over: %s", sid, exc)
            return  # its worker is gone; the scheduler sees it leave
        await self._rpc.flexlab_agent_retagged(host=self.host.name, slice_id=sid, worker=addr)

    async def start_slice(self, cmd: dict[str, Any]) -> None:
        sid = str(cmd["slice_id"])
        if sid in self.running:
            await self.stop_slice(sid, "replaced")
        env = self.env_for(cmd)
        provider = self.provider_for(cmd)
        logger.info("flexlab agent: starting slice %s on %s", sid, ", ".join(cmd["devices"]))
        if cmd.get("private"):
            await self._start_private(sid, cmd, env, provider)
            return
        if self.processes:
            argv = [
                sys.executable,
                "-m",
                "flexlab_dask",
                self.scheduler,
                "--slice",
                json.dumps(cmd),
                "--provider",
                provider,
                "--host",
                self.listen_host,
                "--interval",
                str(self.telemetry_interval),
                *(["--tls", self.tls] if self.tls else []),
                "--agent-pid",
                str(os.getpid()),
            ]
            proc = subprocess.Popen(argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL)
            self.running[sid] = _Running(cmd, process=proc)
        else:
            kwargs = worker_kwargs(cmd, provider=provider, interval=self.telemetry_interval, env=env)
            if self.tls:
                from flexlab.tls import pool_security

                kwargs["security"] = pool_security(self.tls, worker="worker")
            w = Worker(self.scheduler, host=self.listen_host, **kwargs)
            self.running[sid] = _Running(cmd, worker=w)
            await w

    async def stop_slice(self, sid: str, reason: str = "", *, lease_ended: bool = False) -> None:
        """Stop the worker of ``sid``. A private lease's worker: its owner's scheduler is
        told ``reason`` first, and whether the lease ended (``lease_ended``: the work of it
        fails there) or will come back (preempted, this agent closing: it waits)."""
        r = self.running.pop(sid, None)
        if r is None:
            return
        if self.on_stop is not None:
            self.on_stop(sid)  # frees the hardware instance (MIG device, vNPU) it held
        logger.info("flexlab agent: stopping slice %s (%s)", sid, reason)
        if r.private is not None:
            await self._tell_owner(r.private, reason, ended=lease_ended)
        await self._stop_worker(r, reason)
        if r.private is not None:
            await self._forget_private(r.private)

    async def _stop_worker(self, r: _Running, reason: str) -> None:
        if r.worker is not None:
            await r.worker.close(reason=f"flexlab: {reason}")
        if r.process is not None and r.process.poll() is None:
            r.process.terminate()
            try:
                await asyncio.to_thread(r.process.wait, 10)
            except subprocess.TimeoutExpired:
                r.process.kill()

    def _reap(self) -> None:
        """Forget workers that died by themselves (the scheduler saw them go; a private
        lease's worker is watched by :meth:`_watch_private` instead)."""
        for sid, r in list(self.running.items()):
            if r.private is not None:
                continue
            dead = (r.process is not None and r.process.poll() is not None) or (
                r.worker is not None and r.worker.status.name in ("closed", "failed")
            )
            if dead:
                logger.warning("flexlab agent: slice %s worker exited", sid)
                del self.running[sid]
                if self.on_stop is not None:
                    self.on_stop(sid)

    def worker_pids(self) -> dict[str, int]:
        """Process ids of the slice workers this agent started, by slice id."""
        return {sid: r.process.pid for sid, r in self.running.items() if r.process is not None}

    async def close(self, *, leave: bool = True) -> None:
        """Stop every slice worker; with ``leave`` tell the scheduler the host is gone."""
        self._closing = True
        if self._applying is not None and not self._applying.done():
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._applying), 30)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # All at once: a host may run dozens of slice workers, each taking a moment to close.
        await asyncio.gather(*(self.stop_slice(sid, "agent closing") for sid in list(self.running)))
        if leave and self._rpc is not None:
            with contextlib.suppress(OSError, CommClosedError, asyncio.TimeoutError):
                await asyncio.wait_for(self._rpc.flexlab_agent_leave(host=self.host.name), 5)
        if self._rpc is not None:
            await self._rpc.close_rpc()

    # ------------------------------------------------------------------ private leases
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
        priv = _Private(str(cmd.get("lease_id") or sid), str(creds["scheduler"]), folder)
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
            argv = [
                sys.executable,
                "-m",
                "flexlab_dask",
                priv.scheduler,
                "--slice",
                json.dumps(spec),
                "--provider",
                provider,
                "--host",
                self.listen_host,
                "--interval",
                str(self.telemetry_interval),
                *(["--tls", priv.tls] if priv.tls else []),
                "--agent-pid",
                str(os.getpid()),
                "--report-fd",
                str(write_fd),
            ]
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
            run = _Running(spec, process=proc, private=priv)
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
            run = _Running(spec, worker=w, private=priv)
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

    def _private_message(self, sid: str, priv: _Private, msg: dict[str, Any]) -> None:
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

    def _report(self, priv: _Private, handler: str, **kwargs: Any) -> None:
        """Send a report about a private worker to the pool without waiting for it."""

        async def send() -> None:
            try:
                await getattr(self._rpc, handler)(host=self.host.name, **kwargs)
            except (OSError, CommClosedError, asyncio.TimeoutError) as exc:
                logger.info("flexlab agent: %s not delivered (%s)", handler, exc)

        task = asyncio.ensure_future(send())
        priv.reports.add(task)
        task.add_done_callback(priv.reports.discard)

    async def _watch_private(self, sid: str, run: _Running, read_fd: int | None) -> None:
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

    async def _read_reports(self, sid: str, priv: _Private, read_fd: int) -> str:
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

    async def _tell_owner(self, priv: _Private, reason: str, *, ended: bool) -> None:
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

    async def _forget_private(self, priv: _Private, *, watcher: bool = True) -> None:
        if watcher and priv.watch is not None and not priv.watch.done():
            priv.watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await priv.watch
        shutil.rmtree(priv.folder, ignore_errors=True)
        if priv.workdir is not None:
            shutil.rmtree(priv.workdir, ignore_errors=True)


def _no_env(cmd: dict[str, Any]) -> dict[str, str]:
    return {}
