from __future__ import annotations

import pytest

from flexlab.core.ledger import Ledger
from flexlab.core.planner import (
    PREWARM_OWNER,
    Action,
    DeviceLayout,
    Move,
    Rejection,
    SliceLayout,
    enact,
    plan,
)
from flexlab.core.topology import DeviceSpec, HostSpec

A = "h/t4#0"
B = "h/t4#1"


def _moves(moves: list[Move]) -> list[tuple[str, str, tuple[int, ...], tuple[str, ...]]]:
    return [(m.action.name, m.device, m.create, m.release) for m in moves]


@pytest.mark.parametrize(
    ("demand", "layouts", "kwargs", "expected"),
    [
        # Free capacity: pre-warm on the tightest device that fits.
        (
            {500: 1.2},
            [DeviceLayout(A, "t4", 1000), DeviceLayout(B, "t4", 600)],
            {},
            [("PREWARM", B, (500,), ()), ("PREWARM", A, (500,), ())],
        ),
        # Enough idle slices already: nothing to do.
        ({250: 1.0}, [DeviceLayout(A, "t4", 750, (SliceLayout("s1", 250, False),))], {}, []),
        # A busy slice does not count as idle, and is never released.
        (
            {250: 1.0},
            [DeviceLayout(A, "t4", 0, (SliceLayout("s1", 250, True), SliceLayout("s2", 750, False)))],
            {},
            [("CARVE", A, (250,), ("s2",))],
        ),
        # No free capacity: merge two spare idle slices into a wanted larger one.
        (
            {1000: 1.0},
            [DeviceLayout(A, "t4", 0, (SliceLayout("s1", 500, False), SliceLayout("s2", 500, False)))],
            {},
            [("MERGE", A, (1000,), ("s1", "s2"))],
        ),
        # Nothing spare but busy work: no move.
        ({1000: 1.0}, [DeviceLayout(A, "t4", 500, (SliceLayout("s1", 500, True),))], {}, []),
        # The budget caps what is carved; larger sizes go first.
        (
            {1000: 1.0, 250: 2.0},
            [DeviceLayout(A, "t4", 1000), DeviceLayout(B, "t4", 1000)],
            {"max_new_milli": 1250},
            [("PREWARM", A, (1000,), ()), ("PREWARM", B, (250,), ())],
        ),
        # Devices of other models are left alone.
        ({500: 1.0}, [DeviceLayout(A, "t4", 1000)], {"models": frozenset({"a100-80gb"})}, []),
    ],
    ids=["prewarm-tightest", "enough-idle", "carve-not-busy", "merge", "busy-blocks", "budget", "models"],
)
def test_plan(
    demand: dict[int, float],
    layouts: list[DeviceLayout],
    kwargs: dict[str, object],
    expected: list[tuple[str, str, tuple[int, ...], tuple[str, ...]]],
) -> None:
    moves = plan(demand, layouts, **kwargs)  # type: ignore[arg-type]
    assert _moves(moves) == expected
    busy = {s.slice_id for d in layouts for s in d.slices if s.busy}
    assert not busy & {sid for m in moves for sid in m.release}
    assert all(m.detail for m in moves)


def _ledger() -> Ledger:
    return Ledger([HostSpec("h", 16000, 65536, (DeviceSpec("t4", 0), DeviceSpec("t4", 1)))])


def test_enact_applies_and_rejects_with_reasons() -> None:
    led = _ledger()
    idle = led.reserve(host="h", devices=[A], compute_milli=750, owner=PREWARM_OWNER)
    work = led.reserve(host="h", devices=[A], compute_milli=250, owner="ana")
    moves = [
        Move(Action.CARVE, A, (500,), (idle.alloc_id,)),
        Move(Action.CARVE, A, (100,), (work.alloc_id,)),  # busy: refused
        Move(Action.MERGE, A, (1000,), ("gone",)),  # vanished slice: refused
        Move(Action.PREWARM, B, (600,)),
        Move(Action.PREWARM, B, (600,)),  # only 400 left on B: the ledger refuses
    ]
    report = enact(moves, led, busy=lambda sid: sid == work.alloc_id)
    assert [(m.action, len(ids)) for m, ids in report.applied] == [(Action.CARVE, 1), (Action.PREWARM, 1)]
    assert [r.reason for r in report.rejected] == [
        Rejection.SLICE_BUSY,
        Rejection.SLICE_GONE,
        Rejection.LEDGER_CONFLICT,
    ]
    assert report.rejection_counts() == {
        Rejection.SLICE_BUSY: 1,
        Rejection.SLICE_GONE: 1,
        Rejection.LEDGER_CONFLICT: 1,
    }
    assert work.alloc_id in led
    assert idle.alloc_id not in led
    assert sorted(g.compute_milli for g in led.grants_on(A).values()) == [250, 500]
    assert [g.compute_milli for g in led.grants_on(B).values()] == [600]
    led.check_invariants()


def test_enact_rolls_back_a_move_the_ledger_refuses() -> None:
    led = _ledger()
    idle = led.reserve(host="h", devices=[A], compute_milli=500, owner=PREWARM_OWNER)
    led.reserve(host="h", devices=[A], compute_milli=300, owner="ana")
    # Releasing the idle 500 leaves 700 free: two 400s do not fit; the idle slice comes back.
    report = enact([Move(Action.CARVE, A, (400, 400), (idle.alloc_id,))], led, busy=lambda _s: False)
    assert [r.reason for r in report.rejected] == [Rejection.LEDGER_CONFLICT]
    assert idle.alloc_id in led
    assert sorted(g.compute_milli for g in led.grants_on(A).values()) == [300, 500]
    led.check_invariants()
