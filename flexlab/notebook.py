"""flexlab in a notebook: the ``%flex`` magics, and what they share with the widgets.

Load it with ``%load_ext flexlab``, then::

    %flex lease gpu:0.25 --memory 8GiB --ttl 1h     # a slice of your own, as `lease`
    lease.submit(train, data).result()
    %flex status                                    # the pool and your leases
    %flex explain a100:1g.10gb                      # where it would land, or why not
    %flex release                                   # the last lease (or: %flex release L3)

The pool is found by :func:`flexlab.client.connect`: the current Dask client, else
``$FLEXLAB_SCHEDULER`` (set by ``flexlab lab`` for its kernels) or the dask config
``flexlab.scheduler-address``, else an embedded mock pool started in the kernel. In a kernel
of a front-mode server (``$FLEXLAB_FRONT``, no pool credentials: ``flexlab.front``) every
verb goes through the front instead, as the Hub user, and ``%flex lease`` makes private leases.
IPython is imported only when the magics are loaded.
"""

from __future__ import annotations

import argparse
import html
import shlex
from typing import Any

from flexlab.client import Lease, PoolClient, connect, current_user, lease
from flexlab.core.errors import InvalidRequest
from flexlab.core.poolstate import DeviceState, LeaseView, MenuChoice, PoolState, vendor_name
from flexlab.core.units import format_compute, format_memory

LIVE = ("pending", "active", "recovering")


# ------------------------------------------------------------------ shared with the widgets
def pool_client() -> Any:
    """The Dask client of the pool (see the module docstring); the first call may start it.
    None in ``flexlab.front.front_mode``: the verbs then go through the front."""
    from flexlab.front import front_mode

    if front_mode():
        return None
    return connect(embedded=True)


def me() -> str:
    """The owner this kernel acts as: whom the front authenticated in front mode, else
    :func:`~flexlab.client.current_user`."""
    from flexlab.front import FrontClient, front_mode

    return FrontClient().user if front_mode() else current_user()


def _lease_of(client: Any, info: dict[str, Any]) -> Lease:
    """A :class:`Lease` of ``info`` on ``client``, or through the front when ``client`` is None."""
    if client is None:
        from flexlab.front import FrontClient, of

        return of(FrontClient(), str(info["lease_id"]), info=info)
    return Lease(client, info)


def compose_request(
    selector: str,
    *,
    compute: float | str | None = None,
    profile: str | None = None,
    memory: str | float | None = None,
) -> str:
    """A request string from its parts: ``compose_request("npu", compute=0.25, memory="16GiB")``
    is ``"npu:25%,16GiB"``; ``compose_request("a100", profile="1g.10gb")`` is ``"a100:1g.10gb"``.

    A bare ``memory`` number is GiB; ``compute`` is a share in (0, 1] or a string such as ``25%``.
    """
    items: list[str] = []
    if profile:
        if compute is not None:
            raise InvalidRequest("compute", compute, "either a share or a profile, not both")
        items.append(profile)
    elif compute is not None:
        items.append(f"{float(compute) * 100:g}%" if isinstance(compute, (int, float)) else str(compute))
    if memory not in (None, "", 0):
        items.append(f"{memory:g}GiB" if isinstance(memory, (int, float)) else str(memory))
    return f"{selector}:{','.join(items)}" if items else selector


def add_memory(spec: str, memory: str | None) -> str:
    """``spec`` with a device-memory item appended (``gpu:0.25`` + ``8GiB`` -> ``gpu:0.25,8GiB``)."""
    if not memory:
        return spec
    return f"{spec},{memory}" if ":" in spec else f"{spec}:{memory}"


def device_choices(state: PoolState) -> tuple[MenuChoice, ...]:
    """The request form's device menu, as the scheduler computed it from the pool
    (:func:`flexlab.core.poolstate.device_menu`): the JupyterLab panel shows the same one."""
    return state.menu


def where() -> dict[str, Any]:
    """Task body: the slice it runs on (``lease.submit(flexlab.notebook.where).result()``)."""
    from distributed import get_worker

    worker = get_worker()
    out: dict[str, Any] = {"worker": str(worker.name)}
    from flexlab.mock.context import NotOnMockSlice, current_slice

    try:
        ctx = current_slice()
    except NotOnMockSlice:  # a real device: the worker's name says which slice it serves
        return out
    out.update(
        slice=ctx.slice_id,
        device=ctx.device_id,
        model=ctx.model_key,
        share=format_compute(ctx.share_milli),
        memory=format_memory(ctx.memory_mib),
    )
    return out


# ------------------------------------------------------------------ %flex status
class PoolStatus:
    """What ``%flex status`` shows: the pool by host and device, and the caller's leases."""

    def __init__(self, state: PoolState, leases: list[LeaseView], owner: str) -> None:
        self.state = state
        self.leases = leases
        self.owner = owner

    def _slices(self, d: DeviceState) -> list[str]:
        out = []
        for s in d.slices:
            shape = s.profile or format_compute(s.compute_milli)
            who = "shared" if s.owner is None else ("you" if s.owner == self.owner else s.owner)
            out.append(f"{shape} {who} {s.utilisation:.0%}")
        if d.free_compute_milli:
            out.append(f"{format_compute(d.free_compute_milli)} free")
        return out

    def _lease_line(self, x: LeaseView) -> list[str]:
        where_ = ", ".join(x.devices) or x.reason
        ttl = int(x.ttl_left_s)
        return [
            x.lease_id,
            x.state,
            x.request,
            f"{where_} {x.shape}".strip(),
            f"{ttl // 3600}h{ttl % 3600 // 60:02d}m",
            f"{x.utilisation:.0%}",
        ]

    def __repr__(self) -> str:
        lines = []
        for h in self.state.hosts:
            lines.append(f"{h.name}")
            for d in h.devices:
                lines.append(
                    f"  {d.id:<28} {vendor_name(d.vendor):<9} {d.model:<14} "
                    f"util {d.utilisation:>4.0%}  " + " | ".join(self._slices(d))
                )
        lines.append(f"leases of {self.owner}:" if self.leases else f"no leases of {self.owner}")
        lines.extend("  " + "  ".join(self._lease_line(x)) for x in self.leases)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        e = html.escape
        rows = []
        for h, d in self.state.devices():
            rows.append(
                f"<tr><td>{e(h.name)}</td><td>{e(vendor_name(d.vendor))}</td>"
                f"<td>{e(d.name)} #{d.index}</td><td>{d.utilisation:.0%}</td>"
                f"<td>{e(' · '.join(self._slices(d)))}</td></tr>"
            )
        pool = (
            "<table><thead><tr><th>host</th><th>vendor</th><th>device</th><th>util</th>"
            f"<th>slices</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
        if self.leases:
            body = "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in self._lease_line(x)) + "</tr>"
                for x in self.leases
            )
            mine = (
                "<table><thead><tr><th>lease</th><th>state</th><th>request</th><th>slice</th>"
                f"<th>TTL left</th><th>util</th></tr></thead><tbody>{body}</tbody></table>"
            )
        else:
            mine = f"<p>No leases of {e(self.owner)}.</p>"
        return (
            f"<div class='flexlab-status'><h4>Pool</h4>{pool}<h4>Leases of {e(self.owner)}</h4>{mine}</div>"
        )


def status(client: Any = None, owner: str | None = None) -> PoolStatus:
    """The pool and ``owner``'s live leases."""
    pc = PoolClient(client or pool_client())
    who = owner or me()
    leases = [x for x in pc.lease_views(owner=who) if x.live]
    return PoolStatus(pc.pool_state(), leases, who)


# ------------------------------------------------------------------ the magics
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise InvalidRequest("%flex", message, self.format_usage().strip())


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="%flex", description="flexlab leases and pool status from a notebook")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    le = sub.add_parser("lease", help="reserve a slice for yourself")
    le.add_argument("spec", help="a request: gpu:0.25, npu:25%%, a100:1g.10gb, any:0.5")
    le.add_argument("--memory", "-m", help="device memory, e.g. 8GiB (default: with the share)")
    le.add_argument("--ttl", "-t", default="1h", help="time to live, e.g. 30m, 2h (default 1h)")
    le.add_argument("--priority", "-p", type=int, default=0, help="-1000..1000 (default 0)")
    le.add_argument("--as", dest="name", default="lease", help="variable to bind it to (default: lease)")
    le.add_argument("--no-wait", action="store_true", help="return before its slice's worker is up")
    st = sub.add_parser("status", help="the pool by host and device, and your leases")
    st.add_argument("--owner", help="whose leases (default: you)")
    rel = sub.add_parser("release", help="give leases back (default: the last one you made here)")
    rel.add_argument("ids", nargs="*", help="lease ids, e.g. L3")
    rel.add_argument("--all", action="store_true", help="all your live leases")
    ex = sub.add_parser("explain", help="where a request would land now, or why not")
    ex.add_argument("spec")
    ex.add_argument("--task", action="store_true", help="as a task (default: as a new lease)")
    rn = sub.add_parser("renew", help="a new TTL, counted from now")
    rn.add_argument("ids", nargs="*", help="lease ids (default: the last one you made here)")
    rn.add_argument("--ttl", "-t", default="1h")
    return p


class FlexMagicsCore:
    """The logic of ``%flex``, apart from IPython (so it can be tested without a shell)."""

    def __init__(self, user_ns: dict[str, Any] | None = None) -> None:
        self.user_ns = user_ns if user_ns is not None else {}
        self.made: list[Lease] = []

    def run(self, line: str) -> Any:
        args = _parser().parse_args(shlex.split(line))
        return getattr(self, f"_{args.command}")(args)

    def _lease(self, args: argparse.Namespace) -> Lease:
        spec = add_memory(args.spec, args.memory)
        out = lease(spec, ttl=args.ttl, priority=args.priority, client=pool_client(), wait=not args.no_wait)
        self.made.append(out)
        if args.name:
            self.user_ns[args.name] = out
        return out

    def _status(self, args: argparse.Namespace) -> PoolStatus:
        return status(owner=args.owner)

    def _targets(self, ids: list[str], every: bool = False) -> list[Lease]:
        client = pool_client()
        if every:
            mine = PoolClient(client).leases(owner=me())
            return [_lease_of(client, x) for x in mine if x.get("state") in LIVE]
        if ids:
            return [Lease.attach(i, client=client) for i in ids]
        live = [x for x in self.made if x.state in LIVE]
        if live:
            return [live[-1]]
        mine = [x for x in PoolClient(client).leases(owner=me()) if x.get("state") in LIVE]
        if len(mine) == 1:
            return [_lease_of(client, mine[0])]
        names = ", ".join(str(x["lease_id"]) for x in mine) or "none"
        raise InvalidRequest("lease id", None, f"one of your live leases: {names}")

    def _release(self, args: argparse.Namespace) -> str:
        done = [x for x in self._targets(args.ids, args.all) if x.release()]
        return "released " + (", ".join(x.lease_id for x in done) or "nothing")

    def _renew(self, args: argparse.Namespace) -> list[Lease]:
        out = self._targets(args.ids)
        for x in out:
            x.renew(args.ttl)
        return out

    def _explain(self, args: argparse.Namespace) -> str:
        e = PoolClient(pool_client()).explain(args.spec, lease=not args.task)
        w = e.get("where")
        if e["code"] == "SUCCESS" and w:
            shape = w.get("profile") or (
                f"{format_compute(w['compute_milli'][0])} and {format_memory(w['memory_mib'][0])}"
            )
            return f"{args.spec} would land on {', '.join(w['devices'])} as {shape}"
        return f"{args.spec}: {e.get('text') or e.get('summary')}"


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%flex`` (``%load_ext flexlab`` calls this)."""
    from IPython.core.error import UsageError
    from IPython.core.magic import Magics, line_magic, magics_class

    from flexlab.core.errors import FlexlabError

    @magics_class
    class FlexMagics(Magics):
        """``%flex lease|status|release|explain|renew``: see ``%flex --help``."""

        def __init__(self, shell: Any) -> None:
            super().__init__(shell)
            self.core = FlexMagicsCore(shell.user_ns)

        @line_magic
        def flex(self, line: str) -> Any:
            """flexlab leases and pool status: %flex lease SPEC [--memory M] [--ttl T], %flex status,
            %flex release [ID ...], %flex explain SPEC, %flex renew [ID] --ttl T."""
            try:
                result = self.core.run(line)
            except InvalidRequest as exc:
                if exc.field == "%flex":
                    raise UsageError(f"{exc.value}\n{exc.allowed}") from None
                raise UsageError(str(exc)) from None
            except FlexlabError as exc:
                raise UsageError(str(exc)) from None
            except SystemExit:  # --help printed its text
                return None
            if isinstance(result, str):
                print(result)
                return None
            return result

    ipython.register_magics(FlexMagics)
