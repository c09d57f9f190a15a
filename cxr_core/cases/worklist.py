"""The worklist's rules: which stored cases a reader sees (`WorklistFilter`), and in which order (`triage_order`).
The app's Worklist page and the CLI's `cases list` both call them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ..errors import CXRError

LABELS = ("NORMAL", "PNEUMONIA", "not assessed")


@dataclass(frozen=True)
class WorklistFilter:
    """Empty tuples and None mean "any"."""

    statuses: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # NORMAL, PNEUMONIA or "not assessed"
    models: tuple[str, ...] = ()
    warnings: bool | None = None  # True: with warnings only; False: without
    p_min: float = 0.0
    p_max: float = 1.0
    start: date | None = None  # created on or after (UTC date)
    end: date | None = None  # created on or before

    def __post_init__(self) -> None:
        from .store import STATUSES

        for name, values, allowed in (("status", self.statuses, STATUSES), ("label", self.labels, LABELS)):
            bad = [v for v in values if v not in allowed]
            if bad:
                raise CXRError(f"{name} {bad[0]!r} is invalid: expected one of {allowed}.")
        if not 0.0 <= self.p_min <= self.p_max <= 1.0:
            raise CXRError(f"P(pneumonia) range ({self.p_min!r}, {self.p_max!r}) is invalid: expected 0 <= min <= max <= 1.")
        if self.start and self.end and self.start > self.end:
            raise CXRError(f"date range {self.start} to {self.end} is invalid: the start is after the end.")

    def keeps(self, case: dict[str, Any]) -> bool:
        label = case["label"] or "not assessed"
        p = case["pneumonia_probability"]
        created = datetime.fromisoformat(case["created"]).date()
        return ((not self.statuses or case["status"] in self.statuses)
                and (not self.labels or label in self.labels)
                and (not self.models or case["model_id"] in self.models)
                and (self.warnings is None or bool(case["warnings"]) == self.warnings)
                # a probability range that is not the whole [0, 1] leaves out cases without one
                and ((self.p_min, self.p_max) == (0.0, 1.0) or (p is not None and self.p_min <= p <= self.p_max))
                and (self.start is None or created >= self.start)
                and (self.end is None or created <= self.end))


def filter_cases(cases: list[dict[str, Any]], chosen: WorklistFilter) -> list[dict[str, Any]]:
    """The cases `chosen` keeps, in triage order."""
    return triage_order([c for c in cases if chosen.keeps(c)])


def triage_order(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cases that need a human read most come first: not assessed (the model said nothing), then PNEUMONIA
    by descending P(pneumonia), then the rest; newest first within each (and within equal P)."""
    def group(case: dict[str, Any]) -> tuple[int, float]:
        if not case["assessed"]:
            return 0, 0.0
        if case["label"] == "PNEUMONIA":
            return 1, -float(case["pneumonia_probability"] or 0.0)
        return 2, 0.0

    newest_first = sorted(cases, key=lambda c: (c["created"], c["case_id"]), reverse=True)
    return sorted(newest_first, key=group)  # stable: the newest-first order holds within each group
