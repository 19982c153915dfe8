"""``flexlab up``, ``flexlab agent`` and ``flexlab status``: run and read a pool."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flexlab.commands.logs import LEVELS, dask_log_level
from flexlab.core.errors import FlexlabError, InvalidRequest
from flexlab.tls import check_listen, is_loopback, pool_address, pool_security, role_files, tls_dir

if TYPE_CHECKING:
    from flexlab.providers.base import DeviceProvider

DEFAULT_PORT = 8786


def _mock_hosts(spec_path: str | None) -> tuple[list[Any], dict[str, dict[str, list[str]]]]:
    """Host specs and their profile layouts: from a pool spec file, or the demo's pool."""
    if spec_path is None:
        from flexlab_dask.cluster import default_mock_pool

        return default_mock_pool(), {}
    from flexlab.providers.mock import load_pool_spec

    if not Path(spec_path).exists():
        raise InvalidRequest("--spec", spec_path, "the path of an existing pool spec file (YAML or JSON)")
    spec = load_pool_spec(spec_path)
    hosts, layouts = [], {}
    for mh in spec.hosts:
        hs = mh.to_host_spec()
        hosts.append(hs)
        layouts[hs.name] = {
            hs.device_id(d): [i.profile for i in dev.instances]
            for d, dev in zip(hs.devices, mh.devices, strict=True)
            if dev.instances
        }
    return hosts, layouts


class HardwareHost:
    """This machine's real devices, found by every enabled provider, with the per-slice
    environments (visibility and limit variables) their workers get."""

    def __init__(self, name: str | None, providers: Sequence[DeviceProvider] | None = None) -> None:
        import os
        import socket

        import dask.config

        from flexlab.core.topology import FRACTION, PROFILE, DeviceSpec, HostSpec
        from flexlab.providers.binding import SliceEnvFactory
        from flexlab.providers.detect import default_providers, enabled_map

        log = logging.getLogger("flexlab.agent")
        if providers is None:
            providers = default_providers(
                enabled=enabled_map(dask.config.get("flexlab.providers", default={}))
            )
        self.factories: dict[str, SliceEnvFactory] = {}
        self.provider_of_model: dict[tuple[str, int], str] = {}
        devices: list[DeviceSpec] = []
        self.layouts: dict[str, list[str]] = {}
        hostname = name or socket.gethostname().split(".")[0]
        for prov in providers:
            report = prov.detect()
            if not report.ok:
                log.info("flexlab agent: %s: %s", report.provider, report.detail or report.status.value)
                continue
            usable = [d for d in report.devices if d.model_key is not None]
            for d in report.devices:
                if d.model_key is None:
                    log.warning("flexlab agent: no catalog entry for %s; skipped", d.product_name)
            self.factories[report.provider] = SliceEnvFactory(prov, usable)
            for d in usable:
                assert d.model_key is not None
                spec = DeviceSpec(
                    d.model_key, d.index, d.uuid, PROFILE if d.instances else FRACTION, d.memory_mib
                )
                devices.append(spec)
                self.provider_of_model[(spec.model, spec.index)] = report.provider
                if d.instances:
                    self.layouts[f"{hostname}/{spec.model}#{spec.index}"] = [i.profile for i in d.instances]
        if not devices:
            raise InvalidRequest(
                "devices",
                "none found",
                "a machine with NVIDIA, Ascend or Cambricon devices, or --provider mock",
            )
        cpus = (os.cpu_count() or 1) * 1000
        mem = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
        self.spec = HostSpec(hostname, cpus, mem, tuple(devices))

    def provider_for(self, cmd: dict[str, Any]) -> str:
        """The provider of a slice's device: its workers read telemetry through it (a host
        may hold devices of several vendors)."""
        from flexlab.providers.binding import parse_device_id

        _, model, index = parse_device_id(str(cmd["devices"][0]))
        return self.provider_of_model[(model, index)]

    def _factory(self, cmd: dict[str, Any]) -> Any:
        return self.factories[self.provider_for(cmd)]

    def env_for(self, cmd: dict[str, Any]) -> dict[str, str]:
        return dict(self._factory(cmd).env_for(cmd))

    def release(self, slice_id: str) -> None:
        for f in self.factories.values():
            f.release(slice_id)


async def _serve_agents(scheduler: str, args: argparse.Namespace) -> None:
    from flexlab_dask.agent import HostAgent

    tls = tls_dir(args.tls)
    agents: list[HostAgent] = []
    if args.provider == "mock":
        hosts, layouts = _mock_hosts(args.spec)
        if args.host_name:
            hosts = [h for h in hosts if h.name in set(args.host_name)]
        for h in hosts:
            agents.append(
                HostAgent(
                    scheduler,
                    h,
                    provider="mock",
                    processes=not args.threads,
                    layouts=layouts.get(h.name),
                    listen_host=args.listen,
                    tls=tls,
                    private_user=args.private_user,
                    private_python=args.private_python,
                )
            )
    else:
        try:
            hw = HardwareHost(args.host_name[0] if args.host_name else None)
        except InvalidRequest:
            if not getattr(args, "mock_fallback", False):
                raise
            print("flexlab: no NVIDIA, Ascend or Cambricon device found here; serving the mock pool instead")
            args.provider = "mock"
            await _serve_agents(scheduler, args)
            return
        agents.append(
            HostAgent(
                scheduler,
                hw.spec,
                provider=hw.provider_for,
                processes=True,
                layouts=hw.layouts,
                env_for=hw.env_for,
                on_stop=hw.release,
                listen_host=args.listen,
                tls=tls,
                private_user=args.private_user,
                private_python=args.private_python,
            )
        )
    for a in agents:
        await a.start()
    for a in agents:
        try:
            await asyncio.wait_for(a.registered.wait(), timeout=args.register_timeout)
        except asyncio.TimeoutError:
            for b in agents:
                await b.close(leave=False)
            raise FlexlabError(
                f"host {a.host.name} could not register with {scheduler} in {args.register_timeout:g} s: "
                "no flexlab scheduler there, or it refused this agent's TLS certificate (another pool's "
                "CA, or none; see docs/security.md)"
            ) from None
        print(
            f"flexlab agent: host {a.host.name} registered with {scheduler} ({len(a.host.devices)} devices)"
        )
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for a in agents:
        await a.close(leave=True)
    return


def cmd_agent(args: argparse.Namespace) -> int:
    if args.detect_only:
        from flexlab.providers.detect import default_providers, detect_all, render_reports

        print("\n".join(render_reports(detect_all(default_providers()))))
        return 0
    if not args.scheduler:
        raise InvalidRequest("scheduler", None, "an address such as tcp://127.0.0.1:8786")
    dask_log_level(args.log_level)
    tls = tls_dir(args.tls)
    address = pool_address(args.scheduler, tls=bool(tls))
    if tls:
        role_files(tls, "agent")  # a missing file is named now, not as a failed handshake later
        role_files(tls, "worker")
    _warn_once(check_listen("slice workers (--listen)", args.listen, tls=bool(tls), insecure=args.insecure))
    asyncio.run(_serve_agents(address, args))
    return 0


async def _up(args: argparse.Namespace) -> None:
    from distributed import Scheduler
    from flexlab_dask.scheduler import FlexScheduler

    tls = tls_dir(args.tls)
    security = pool_security(tls, scheduler="scheduler") if tls else None
    plugin = FlexScheduler(state_file=args.state_file, policy=args.policy)
    # No --dashboard: Dask's HTTP routes (info, JSON, metrics) on a free loopback port, never
    # on port 8787 of the scheduler's interface: they are plain, unauthenticated HTTP.
    dashboard = (
        {"dashboard_address": args.dashboard}
        if args.dashboard
        else {
            "dashboard_address": "127.0.0.1:0",
            "dashboard": False,
        }
    )
    async with Scheduler(
        host=args.host,
        port=args.port,
        protocol="tls" if tls else "tcp",
        security=security,
        plugins=[plugin],
        **dashboard,
    ) as s:
        print(f"flexlab scheduler at {s.address}")
        with_tls = f" --tls {tls}" if tls else ""
        if tls:
            print(f"  connect:  flexlab.connect('{s.address}', tls='{tls}')   (the client certificate)")
        else:
            print(f"  connect:  Client('{s.address}')")
        print(f"  status:   flexlab status --scheduler {s.address}{with_tls}")
        print(f"  metrics:  http://{s.http_server.address}:{s.http_server.port}/metrics   (Prometheus)")
        print(f"  add more machines:  flexlab agent {s.address}{with_tls}")
        sys.stdout.flush()
        args.scheduler = s.address
        if args.no_agent:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        else:
            await _serve_agents(s.address, args)


def _warn_once(warning: str | None) -> None:
    if warning:
        print(warning, file=sys.stderr, flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    dask_log_level(args.log_level)
    tls = tls_dir(args.tls)
    if tls:  # a missing file is named before anything starts
        role_files(tls, "scheduler")
        if not args.no_agent:
            role_files(tls, "agent")
            role_files(tls, "worker")
    _warn_once(check_listen("the scheduler", args.host, tls=bool(tls), insecure=args.insecure))
    if not args.no_agent:
        _warn_once(
            check_listen("slice workers (--listen)", args.listen, tls=bool(tls), insecure=args.insecure)
        )
    if args.dashboard:
        dash_host = args.dashboard.rpartition(":")[0]
        if not is_loopback(dash_host):
            print(
                f"flexlab: warning: the Dask dashboard listens on {args.dashboard}: plain HTTP without "
                "authentication (read-only views of the pool's tasks and workers)",
                file=sys.stderr,
            )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_up(args))
    return 0


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"invalid interval {text!r}; allowed: seconds from 0.1 to 3600")
    return value


def cmd_status(args: argparse.Namespace) -> int:
    from flexlab.client import PoolClient
    from flexlab.dask_client import open_client

    tls = tls_dir(args.tls)
    address = pool_address(args.scheduler, tls=bool(tls))
    security = pool_security(tls, client="client") if tls else None
    try:
        client = open_client(address, timeout=args.timeout, security=security)
    except OSError as exc:
        print(f"flexlab: cannot reach a scheduler at {args.scheduler}: {exc}", file=sys.stderr)
        return 2
    with client:
        if "flexlab" not in client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins)):
            print(
                f"flexlab: the scheduler at {args.scheduler} runs no flexlab plugin "
                "(start it with flexlab up, or dask scheduler --preload flexlab_dask.scheduler)",
                file=sys.stderr,
            )
            return 2
        pool = PoolClient(client)
        if args.watch:
            from flexlab.commands.watch import watch

            return watch(pool.pool_state, address=args.scheduler, interval=args.interval)
        state = pool.pool_state()
    if args.json:
        print(json.dumps(state.to_json(), indent=2))
        return 0
    from flexlab.commands.render import print_pool

    print_pool(state)
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def agent_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--provider",
            default="auto",
            choices=["auto", "mock"],
            help="auto: the real devices found on this machine; mock: simulated devices",
        )
        p.add_argument("--spec", help="mock pool spec file (YAML/JSON); default: the demo's mock pool")
        p.add_argument("--host-name", action="append", help="only these hosts of the spec (repeatable)")
        p.add_argument(
            "--threads",
            action="store_true",
            help="run mock slice workers as threads of the agent instead of processes",
        )
        p.add_argument(
            "--register-timeout", type=float, default=30.0, help="seconds to wait for the scheduler"
        )
        p.add_argument(
            "--listen",
            default="127.0.0.1",
            metavar="ADDRESS",
            help="address slice workers listen on; another machine's scheduler must reach it "
            "(default 127.0.0.1: a scheduler on this machine)",
        )
        tls_options(p)
        p.add_argument(
            "--log-level",
            default="warning",
            choices=LEVELS,
            help="what Dask logs here and in the slice workers (default warning: its problems, not "
            "its start-up and connection messages)",
        )

    def tls_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--tls",
            metavar="DIR",
            default=None,
            help="mutual TLS with the certificates `flexlab certs DIR` wrote (default: $FLEXLAB_TLS, "
            "else the dask config flexlab.tls, else none); see docs/security.md",
        )
        p.add_argument(
            "--insecure",
            action="store_true",
            help="allow listening beyond loopback without TLS: anyone who reaches the port can run "
            "code on the pool",
        )
        p.add_argument(
            "--private-user",
            metavar="ACCOUNT",
            default=None,
            help="run private leases' workers as this system account ({owner}: the lease owner's "
            "account), not the agent's, which can read the pool's certificates; needs root "
            "(docs/security.md, Private leases)",
        )
        p.add_argument(
            "--private-python",
            metavar="PATH",
            default=None,
            help="the Python that --private-user runs (default: this one, if that account can run it)",
        )

    up = sub.add_parser("up", help="start a scheduler with the flexlab plugin and a local agent")
    up.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any)")
    up.add_argument(
        "--dashboard",
        default=None,
        help="Dask dashboard address, e.g. 127.0.0.1:8787 (default off: Dask's HTTP routes on a free "
        "loopback port); the pool's Prometheus metrics are at /metrics of that address (docs/metrics.md)",
    )
    up.add_argument("--state-file", default=None, help="SQLite file that keeps leases (default: see docs)")
    from flexlab.core.placement.policies import POLICIES

    up.add_argument(
        "--policy",
        default=None,
        choices=list(POLICIES),
        metavar="POLICY",
        help=f"placement policy, one of {', '.join(POLICIES)} (default: the flexlab.policy setting; "
        "fgd and flexlab learn the shapes of the requests they see)",
    )
    up.add_argument("--no-agent", action="store_true", help="start only the scheduler")
    agent_options(up)
    up.set_defaults(func=cmd_up, mock_fallback=True)

    agent = sub.add_parser("agent", help="register this machine's devices with a flexlab scheduler")
    agent.add_argument("scheduler", nargs="?", help="scheduler address, e.g. tcp://10.0.0.1:8786")
    agent.add_argument(
        "--detect-only", action="store_true", help="print what each vendor's provider finds, and exit"
    )
    agent_options(agent)
    agent.set_defaults(func=cmd_agent)

    status = sub.add_parser("status", help="show the pool: hosts, devices, slices, leases, waiting work")
    status.add_argument(
        "--scheduler",
        default=f"127.0.0.1:{DEFAULT_PORT}",
        help=f"scheduler address (default 127.0.0.1:{DEFAULT_PORT}, tcp:// or with --tls tls://)",
    )
    status.add_argument(
        "--json", action="store_true", help="print the pool state as JSON (checked; its fields: docs/wire.md)"
    )
    status.add_argument("--timeout", default="5s", help="how long to try to connect")
    status.add_argument(
        "--watch",
        action="store_true",
        help="a live view in the terminal, redrawn in place (q or Ctrl-C quits)",
    )
    status.add_argument(
        "--interval", type=_interval, default=1.0, help="seconds between redraws with --watch (default 1)"
    )
    status.add_argument(
        "--tls",
        metavar="DIR",
        default=None,
        help="connect with the client certificate in DIR (default: $FLEXLAB_TLS or flexlab.tls)",
    )
    status.set_defaults(func=cmd_status)


__all__ = ["FlexlabError", "add_parsers"]
