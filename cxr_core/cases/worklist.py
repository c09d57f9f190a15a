"""The worklist's rules: which stored cases a reader sees (`WorklistFilter`), in which order (`triage_order`), and
what a stored decision would read now (`readings_now`). The app's Worklist page and the CLI's `cases list` both
call them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ..errors import CXRError
from ..model.operating_point import reading_now
from ..safety.intended_use import not_a_chest_film
from .store import STATUSES

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
    """The cases that need a human read most come first: not assessed chest films (the model said nothing), then
    PNEUMONIA and then NORMAL, each by descending P(pneumonia) (a borderline NORMAL needs a second look more than
    a clear one), and last the inputs that are not chest films at all (`not_chest_film`); newest first within
    equal P. The Worklist page and `cases list` both call this."""
    def group(case: dict[str, Any]) -> tuple[int, float]:
        if not case["assessed"]:
            return (3 if not_chest_film(case) else 0), 0.0
        return (1 if case["label"] == "PNEUMONIA" else 2), -float(case["pneumonia_probability"] or 0.0)

    newest_first = sorted(cases, key=lambda c: (c["created"], c["case_id"]), reverse=True)
    return sorted(newest_first, key=group)  # stable: the newest-first order holds within each group


def not_chest_film(case: dict[str, Any]) -> bool:
    """A case refused because its input is not a chest film (photograph, CT, lateral...): the Worklist keeps
    these in their own tab."""

    return not case["assessed"] and not_a_chest_film(case.get("not_assessed_reasons") or [])


def readings_now(cases: list[dict[str, Any]], points: dict[str, Any], model_in_use: str) -> dict[int, str]:
    """Case id -> the sentence saying how a stored decision would read now (`operating_point.reading_now`), for
    the cases whose reading has changed; `points`: each model's operating point in use now (model id ->
    OperatingPoint), missing for a model no longer registered."""

    out = {}
    for case in cases:
        point = points.get(case["model_id"])
        if point is None:
            continue
        said = reading_now(case["assessed"], case["pneumonia_probability"], case["label"], case["model_id"], point,
                           model_in_use)
        if said:
            out[case["case_id"]] = said
    return out


def describe_audit(event: dict[str, Any]) -> str:
    """One audit event's details in words (no dict shown to a reader)."""
    d = event.get("details") or {}
    action = event.get("action")
    if action == "create":
        return f"analysed: {d.get('label') or 'not assessed'}"
    if action in ("review", "change"):
        text = f"{d.get('decision')}, final label {d.get('label')}" + (f", comment: {d['comment']}" if d.get("comment") else "")
        prev = d.get("previous")
        return text + (f" (before: {prev['decision']}, {prev['label']} by {prev['reader']})" if prev else "")
    if action == "site-threshold":
        if d.get("threshold") is None:
            return "site operating point reverted to the model's threshold"
        return f"site operating point set to {d['threshold']:.3f} (local evaluation of n = {d.get('n')})"
    if action == "export":
        return (f"exported {d.get('NORMAL', 0)} NORMAL and {d.get('PNEUMONIA', 0)} PNEUMONIA film(s)"
                + (", reviewed cases only" if d.get("reviewed_only") else ""))
    if action in ("delete", "restore"):
        return "removed from the worklist" if action == "delete" else "back in the worklist"
    return ", ".join(f"{k} {v}" for k, v in d.items() if not isinstance(v, (dict, list)))
