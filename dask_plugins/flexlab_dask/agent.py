"""The host agent: registers a machine's devices and runs its slice workers.

One agent runs on every machine with accelerators (``flexlab agent tcp://HOST:PORT``). It
registers the host's devices with the scheduler plugin, then long-polls it for commands:
start a slice worker (a process pinned to the slice by its environment, or an in-process
worker for mock pools), stop one. If the scheduler goes away the agent keeps trying and
registers again when it is back, which is how a restarted scheduler gets its hosts and
leases back. Several agents pointed at one scheduler form one pool.

A private lease's worker joins its owner's scheduler instead
(``flexlab_dask.agent_private``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from distributed import Worker
from distributed.comm.core import CommClosedError
from distributed.core import rpc

from flexlab.core.errors import InvalidRequest
from flexlab.core.topology import HostSpec
from flexlab_dask.agent_private import PrivateWorkers, Running
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


class HostAgent(PrivateWorkers):
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
        self.running: dict[str, Running] = {}
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

    def worker_argv(self, scheduler: str, spec: dict[str, Any], provider: str, tls: str | None) -> list[str]:
        """The command line of a slice worker process joining ``scheduler``."""
        return [
            sys.executable,
            "-m",
            "flexlab_dask",
            scheduler,
            "--slice",
            json.dumps(spec),
            "--provider",
            provider,
            "--host",
            self.listen_host,
            "--interval",
            str(self.telemetry_interval),
            *(["--tls", tls] if tls else []),
            "--agent-pid",
            str(os.getpid()),
        ]

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
            argv = self.worker_argv(self.scheduler, cmd, provider, self.tls)
            proc = subprocess.Popen(argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL)
            self.running[sid] = Running(cmd, process=proc)
        else:
            kwargs = worker_kwargs(cmd, provider=provider, interval=self.telemetry_interval, env=env)
            if self.tls:
                from flexlab.tls import pool_security

                kwargs["security"] = pool_security(self.tls, worker="worker")
            w = Worker(self.scheduler, host=self.listen_host, **kwargs)
            self.running[sid] = Running(cmd, worker=w)
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

    async def _stop_worker(self, r: Running, reason: str) -> None:
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


def _no_env(cmd: dict[str, Any]) -> dict[str, str]:
    return {}
