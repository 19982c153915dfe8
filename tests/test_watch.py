"""``flexlab status --watch``: the screen as text (any size), and the live view in a real
terminal (tmux) over a running pool: a lease appears on it and goes again."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flexlab.commands.watch import screen_lines
from flexlab.core.poolstate import PoolState
from tests.test_cli import free_port

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "tests" / "dashboard" / "data" / "pool_telemetry.json"


@pytest.fixture(scope="module")
def recorded() -> PoolState:
    return PoolState.from_json(json.loads(RECORDED.read_text())["state"])


def _big() -> PoolState:
    pytest.importorskip("bokeh")  # flexlab.dashboard's package imports it
    from flexlab.dashboard.synthetic import synthetic_state

    return synthetic_state(100)


@pytest.mark.parametrize(
    ("width", "height"), [(80, 24), (120, 40), (200, 60)], ids=["80x24", "120x40", "200x60"]
)
def test_the_recorded_pool_fits_the_terminal(recorded: PoolState, width: int, height: int) -> None:
    lines = screen_lines(recorded, width, height, address="tcp://127.0.0.1:8786", interval=2)
    assert len(lines) <= height
    assert max(len(x) for x in lines) <= width
    text = "\n".join(lines)
    assert lines[0].startswith("flexlab pool at tcp://127.0.0.1:8786 · policy binpack")
    assert "3 hosts · 6 devices" in lines[1]
    assert lines[-1] == "q quit · redrawn every 2 s"
    # every device, lease and reason of the recording is on a screen this size
    for h, d in recorded.devices():
        assert any(x.split()[:3] == [h.name, d.model, f"#{d.index}"] for x in lines), d.id
    for le in recorded.leases:
        assert any(x.startswith(f"{le.lease_id} ") and f" {le.owner} " in x for x in lines), le.lease_id
    assert "WAITING (2 tasks, 1 leases)" in text
    assert "   2 × v100s-32gb:1" in text  # the two waiting tasks, grouped, with why
    assert "lease L3 dave v100s-32gb:1: UNSCHEDULABLE" in text


def test_a_device_line_shows_its_slices_with_owner_and_utilisation(recorded: PoolState) -> None:
    lines = screen_lines(recorded, 200, 60)
    [line] = [x for x in lines if x.startswith("ascend-a") and "#1" in x]
    assert "██········  25%" in line  # the device's utilisation bar
    assert "free   75%" in line
    assert "L1 alice vir05_1c_16g 100%" in line  # alice's lease: its profile, kept busy


def test_a_host_without_accelerators_and_the_agents_are_shown(recorded: PoolState) -> None:
    from dataclasses import replace

    from flexlab.core.poolstate import HostState

    cpu = HostState("cpu-only", "", 16000, 12000, 65536, 65536, ())
    state = replace(recorded, hosts=(*recorded.hosts, cpu))
    lines = screen_lines(state, 120, 40)
    assert "cpu-only   (no accelerators)  CPU free 12 of 16" in lines
    assert recorded.plugin is not None
    slowest = max(recorded.plugin.agents.values())
    assert f"3 agents, last heard ≤ {slowest:.0f} s ago" in lines[0]


def test_a_pool_larger_than_the_screen_shows_the_busiest_and_counts_the_rest() -> None:
    state = _big()
    lines = screen_lines(state, 80, 24)
    assert len(lines) == 24
    assert max(len(x) for x in lines) <= 80
    more = [x for x in lines if x.startswith("… ") and "more devices" in x]
    assert len(more) == 1
    shown = [x for x in lines if x.startswith("node-")]
    assert int(more[0].split()[1]) == 100 - len(shown)
    utils = sorted((d.utilisation for _, d in state.devices()), reverse=True)
    # the busiest devices are the ones shown
    assert min(int(x.split("%")[0].split()[-1]) for x in shown) >= round(100 * utils[len(shown) - 1]) - 1
    assert any(x.startswith("… ") and "more leases" in x for x in lines)
    assert any(x.startswith("WAITING (40 tasks") for x in lines)


def test_an_interval_out_of_range_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from flexlab.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["status", "--watch", "--interval", "0"])
    assert exc.value.code == 2
    assert "invalid interval '0'; allowed: seconds from 0.1 to 3600" in capsys.readouterr().err


# ------------------------------------------------------------------ in a real terminal
TMUX = shutil.which("tmux") or "/usr/bin/tmux"


class Terminal:
    """A tmux server of its own (``-L``), one session of a fixed size."""

    def __init__(self, command: str, width: int = 120, height: int = 40) -> None:
        if not Path(TMUX).exists():
            pytest.fail("tmux is not installed: `make tmux` installs Debian's (make test does)")
        self.name = f"flexlab-watch-{os.getpid()}-{secrets.token_hex(4)}"
        self.base = [TMUX, "-L", self.name, "-f", "/dev/null"]
        subprocess.run(
            [*self.base, "new-session", "-d", "-s", "w", "-x", str(width), "-y", str(height), command],
            check=True,
            timeout=30,
        )

    def screen(self) -> str:
        r = subprocess.run(
            [*self.base, "capture-pane", "-p", "-t", "w"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return r.stdout

    def wait_for(self, ok: Callable[[str], bool], what: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if ok(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"the screen never showed {what} in {timeout:g} s; last screen:\n{text}")

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "w", *keys], check=True, timeout=30)

    def kill(self) -> None:
        """Stop this tmux server (and what runs in it) and remove its socket."""
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=30, check=False)
        folder = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (folder / self.name).unlink(missing_ok=True)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[str]:
    """``flexlab up`` with the demo's mock pool on 127.0.0.1, once its slices are ready."""
    port = free_port()
    env = {**os.environ, "DASK_FLEXLAB__STATE_FILE": str(tmp_path / "leases.sqlite")}
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen(
        [sys.executable, "-m", "flexlab.cli", "up", "--port", str(port), "--provider", "mock", "--threads"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    address = f"tcp://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r = subprocess.run(
                [sys.executable, "-m", "flexlab.cli", "status", "--scheduler", address, "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if r.returncode == 0:
                state = PoolState.from_json(json.loads(r.stdout))
                slices = [s for _, s in state.slices()]
                if len(state.hosts) == 3 and slices and all(s.state == "ready" for s in slices):
                    break
            time.sleep(0.5)
        else:
            raise AssertionError((tmp_path / "up.log").read_text())
        yield address
    finally:
        up.terminate()
        up.wait(30)
        log.close()


@pytest.mark.slow
def test_watch_in_tmux_shows_a_lease_come_and_go(pool: str) -> None:
    from distributed import Client

    import flexlab

    watch = f"{sys.executable} -m flexlab.cli status --watch --scheduler {pool} --interval 0.3"
    # twice: q ends the first, Ctrl-C the second
    command = f"{watch}; echo WATCH-EXITED $?; {watch}; echo AGAIN-EXITED $?; sleep 120"
    term = Terminal(command)
    try:
        first = term.wait_for(lambda s: "DEVICES (6)" in s, "the pool")
        assert f"flexlab pool at {pool}" in first
        assert "3 hosts · 6 devices" in first
        assert "LEASES (0) " in first
        with Client(pool, timeout="30s") as client:
            lease = flexlab.lease("t4:0.5", ttl="10m", owner="watcher", client=client, timeout=60)
            lid = lease.lease_id

            def shows_lease(s: str) -> bool:
                return any(
                    x.startswith(f"{lid} ") and " watcher " in x and " active " in x for x in s.splitlines()
                )

            seen = term.wait_for(shows_lease, f"lease {lid} of watcher")
            # and its slice on the T4, with its owner
            assert any(
                x.startswith("mixed-c") and " t4 " in x and f"{lid} watcher 50%" in x
                for x in seen.splitlines()
            )
            lease.release()
        term.wait_for(lambda s: f"{lid} " not in s and "watcher" not in s, f"lease {lid} gone")
        term.keys("q")
        after_q = term.wait_for(lambda s: "WATCH-EXITED 0" in s, "a clean exit on q")
        assert "Traceback" not in after_q
        term.wait_for(lambda s: s.count("DEVICES (6)") == 1 and "WATCH-EXITED" not in s, "the pool again")
        term.keys("C-c")
        after_c = term.wait_for(lambda s: "AGAIN-EXITED 0" in s, "a clean exit on Ctrl-C")
        assert "Traceback" not in after_c
        assert "KeyboardInterrupt" not in after_c
    finally:
        term.kill()


def test_watch_without_a_scheduler_says_so() -> None:
    port = free_port()
    command = (
        f"{sys.executable} -m flexlab.cli status --watch --scheduler tcp://127.0.0.1:{port} --timeout 1s; "
        "echo WATCH-EXITED $?; sleep 60"
    )
    term = Terminal(command, 80, 24)
    try:
        # nothing listens there: the plain status error, before any screen is drawn
        text = term.wait_for(lambda s: "WATCH-EXITED" in s, "an exit")
        assert "cannot reach a scheduler" in text
        assert "WATCH-EXITED 2" in text
    finally:
        term.kill()
