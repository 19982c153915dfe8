"""Structured outcomes of placement: a code, counted reasons and the plugin that decided.

Kubernetes' scheduler framework vocabulary: a filter rejects a candidate with a reason;
the reasons of all candidates are counted, never flattened to strings until the edge
renders them ("3 of 8 devices: INSUFFICIENT_MEMORY").

>>> Reason.INSUFFICIENT_MEMORY.resolvable
True
>>> Reason.MODEL_MISMATCH.resolvable
False
>>> s = Status.from_reasons({Reason.INSUFFICIENT_MEMORY: 3, Reason.MODEL_MISMATCH: 5})
>>> s.code
<Code.UNSCHEDULABLE: 'UNSCHEDULABLE'>
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum


class Code(str, Enum):
    """The outcome of placing one request."""

    SUCCESS = "SUCCESS"
    #: Fits nowhere now, but may fit after a release or a re-slice.
    UNSCHEDULABLE = "UNSCHEDULABLE"
    #: Can never fit this pool as it is built (wrong model, too big for any device or host).
    UNRESOLVABLE = "UNRESOLVABLE"
    #: A bug or an inconsistent pool; the message says which.
    ERROR = "ERROR"


class Reason(IntEnum):
    """Why a filter rejected a candidate. ``0`` (``OK``) means "not rejected".

    The integer values are stable: filters return them in int8 arrays, one per candidate.
    """

    OK = 0
    # -- never fits this candidate, whatever is released (static facts of the pool) -----
    KIND_MISMATCH = 1
    VENDOR_MISMATCH = 2
    MODEL_MISMATCH = 3
    #: The device's total memory is below what the request or its selector needs.
    DEVICE_TOO_SMALL = 4
    #: The model cannot be carved into the named profile (or a fraction was asked of a
    #: profile-only device, or a profile of a fraction-sliced one).
    PROFILE_UNSUPPORTED = 5
    #: The host's total CPU is below the request.
    HOST_CPU_TOO_SMALL = 6
    #: The host's total memory is below the request.
    HOST_MEMORY_TOO_SMALL = 7
    #: The host has fewer matching devices than the request asks for, even when all are free.
    NOT_ENOUGH_DEVICES = 8
    #: A CPU-only request cannot use a device; multi-device requests are placed per host.
    NOT_A_CANDIDATE = 9
    # -- may fit after a release, a re-slice or a repair --------------------------------
    DEVICE_UNSCHEDULABLE = 20
    INSUFFICIENT_COMPUTE = 21
    INSUFFICIENT_MEMORY = 22
    PROFILE_UNAVAILABLE = 23
    INSUFFICIENT_HOST_CPU = 24
    INSUFFICIENT_HOST_MEMORY = 25
    NOT_ENOUGH_WHOLE_DEVICES = 26

    @property
    def resolvable(self) -> bool:
        """True when a release, re-slice or repair could make the candidate fit."""
        return self >= Reason.DEVICE_UNSCHEDULABLE


ReasonCounts = Counter[Reason]


@dataclass(frozen=True)
class Status:
    """A code, the counted reasons behind it and the plugin that produced it."""

    code: Code
    reasons: Mapping[Reason, int] = field(default_factory=dict)
    plugin: str = ""
    message: str = ""

    @property
    def is_success(self) -> bool:
        return self.code is Code.SUCCESS

    @classmethod
    def success(cls, plugin: str = "") -> Status:
        return cls(Code.SUCCESS, {}, plugin)

    @classmethod
    def from_reasons(cls, reasons: Mapping[Reason, int], plugin: str = "") -> Status:
        """UNSCHEDULABLE when any candidate failed only for a resolvable reason, else
        UNRESOLVABLE (also when there were no candidates at all)."""
        counted: dict[Reason, int] = {r: n for r, n in reasons.items() if n > 0 and r is not Reason.OK}
        code = Code.UNSCHEDULABLE if any(r.resolvable for r in counted) else Code.UNRESOLVABLE
        return cls(code, counted, plugin)

    def describe(self) -> str:
        """A short text such as ``UNSCHEDULABLE: 3 INSUFFICIENT_MEMORY, 5 MODEL_MISMATCH``."""
        if not self.reasons:
            return self.code.value + (f": {self.message}" if self.message else "")
        parts = ", ".join(f"{n} {r.name}" for r, n in sorted(self.reasons.items(), key=lambda kv: -kv[1]))
        return f"{self.code.value}: {parts}"
