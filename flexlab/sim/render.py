"""One table: our policies beside the published figures of the same workloads.

Cells are "unallocated GPU % mean±sd over seeds" with the fragmented GPU % (FGD's measure,
% of capacity) below; published rows give the reference's means over its 10 seeds.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from flexlab.sim.bench import BenchmarkResult
from flexlab.sim.published import PUBLISHED_POLICIES, SAME_POLICY


def _fmt(mean: float, sd: float | None = None) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f}" if sd is None or math.isnan(sd) else f"{mean:.2f}±{sd:.2f}"


def _frag(value: float) -> str:
    return "" if math.isnan(value) else f"\n[dim]frag {value:.2f}[/dim]"


def build_table(result: BenchmarkResult) -> Table:
    """The benchmark as one ``rich`` table (policy x arrived load)."""
    many = len(result.workloads) > 1
    table = Table(
        title=(
            f"openb: unallocated GPU % at arrived load (mean±sd over {len(result.seeds)} seeds; "
            "frag = fragmented GPU % of capacity)"
        ),
        caption="published: hkust-adsl/kubernetes-scheduler-simulator expected_results, mean of 10 seeds",
        show_lines=False,
    )
    if many:
        table.add_column("workload")
    table.add_column("policy")
    table.add_column("source")
    for load in result.loads:
        table.add_column(f"{load}%", justify="right")
    table.add_column("decisions/s\n[dim]wall (cpu)[/dim]", justify="right")
    for wl in result.workloads:
        for pol in result.policies:
            cells = [
                _fmt(*result.unallocated(wl, pol, load)) + _frag(result.fragmentation(wl, pol, load))
                for load in result.loads
            ]
            rate = (
                f"{result.decisions_per_s(wl, pol):,.0f} ({result.decisions_per_s(wl, pol, cpu=True):,.0f})"
            )
            style = "bold" if pol == "flexlab" else ""
            head = [wl] if many else []
            table.add_row(*head, pol, "ours", *cells, rate, style=style)
        shown = [p for p in PUBLISHED_POLICIES if (wl, p) in result.published]
        ours = {SAME_POLICY.get(p) for p in result.policies}
        for ref in shown:
            cells = [
                _fmt(result.published_unallocated(wl, ref, load)[0])
                + _frag(result.published_fragmentation(wl, ref, load))
                for load in result.loads
            ]
            head = [wl] if many else []
            style = "dim" if ref not in ours and ref != "FGD" else ""
            table.add_row(*head, ref, "published", *cells, "", style=style)
        if many:
            table.add_section()
    return table


def print_table(result: BenchmarkResult, console: Console | None = None) -> None:
    """Print the table; when the output is not a terminal, wide enough not to fold it."""
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 40 + 16 * len(result.loads)))
    console.print(build_table(result))
