"""The model card's two evidence blocks that code reads, typed: the stress suite's results (`StressReport`) and
the threshold policy's evidence (`ThresholdEvidence`), and the stress table's rows (`stress_rows`), the one
source of the CLI's, the Markdown card's and the Robustness tab's table.

They live in the model layer because the card (card.py) holds them; the validation layer fills them
(cxr_core.validation.stress, cxr_core.validation.metrics). `from_dict` / `to_dict` read and write the card's JSON
unchanged (the same keys, in the same order; keys a newer version wrote are kept in `extra`), and a bad value is
refused at construction with a ModelError naming the field and quoting the value.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from ..errors import ModelError
from ..inputs.shifts import SHIFTS

CLEAN = "clean"  # the unshifted condition's key
STRESS_METRICS = ("auc", "sensitivity", "specificity", "accuracy")  # what each condition and worst case holds
SHOWN_METRICS = ("auc", "sensitivity", "specificity")  # what every worst-case line states
_EMPTY: Mapping[str, Any] = MappingProxyType({})


class _Block:
    """from_dict / to_dict shared by the blocks: required fields must be present, unknown keys go to `extra`, and
    an optional field (default None) that is None is left out, as the card's writers always did."""

    LABEL = "evidence"

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ModelError(f"{cls.LABEL} = {data!r} is invalid: expected an object.")
        own = {f.name for f in fields(cls)} - {"extra"}  # type: ignore[arg-type]
        for f in fields(cls):  # type: ignore[arg-type]
            if f.default is MISSING and f.default_factory is MISSING and f.name not in data:
                raise ModelError(f"{cls.LABEL} has no {f.name!r}: {dict(data)!r} is invalid.")
        return cls(**{k: v for k, v in data.items() if k in own},
                   extra={k: v for k, v in data.items() if k not in own})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name != "extra" and not (value is None and f.default is None):
                out[f.name] = plain(value)
        out.update(plain(self.extra))  # type: ignore[attr-defined]
        return out

    def _bad(self, name: str, expected: str) -> ModelError:
        return ModelError(f"{self.LABEL} field {name!r} = {getattr(self, name)!r} is invalid: expected {expected}.")

    def _check(self, name: str, ok: bool, expected: str) -> None:
        if not ok:
            raise self._bad(name, expected)

    def _freeze(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _freeze_extra(self) -> None:
        self._check("extra", isinstance(self.extra, Mapping), "an object")  # type: ignore[attr-defined]
        self._freeze("extra", MappingProxyType(dict(self.extra)))  # type: ignore[attr-defined]


def plain(value: Any) -> Any:
    """`value` as JSON data: every evidence block as its dict, mappings and sequences copied (the card's writer)."""
    if isinstance(value, _Block):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_rate(value: Any) -> bool:
    """A metric in [0, 1], or NaN (an AUC with one class only)."""
    return _is_number(value) and (math.isnan(value) or 0.0 <= value <= 1.0)


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _typed(value: Any, cls: type) -> Any:
    return value if isinstance(value, cls) else cls.from_dict(value)  # type: ignore[attr-defined]


# ---- the stress suite

@dataclass(frozen=True)
class Extreme(_Block):
    """A worst case of one metric: its lowest value and the condition where it fell."""

    value: float
    condition: str
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    LABEL = "stress worst case"

    def __post_init__(self) -> None:
        self._check("value", _is_rate(self.value), "a number in [0, 1]")
        self._check("condition", isinstance(self.condition, str), "a condition name")
        self._freeze_extra()


@dataclass(frozen=True)
class WorstCase(_Block):
    """The lowest AUC, sensitivity, specificity and accuracy over the conditions up to `max_severity`."""

    max_severity: int
    auc: Extreme
    sensitivity: Extreme
    specificity: Extreme
    accuracy: Extreme
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    LABEL = "stress worst case"

    def __post_init__(self) -> None:
        self._check("max_severity", _is_int(self.max_severity), "a severity from 0 to 3")
        for name in STRESS_METRICS:
            self._freeze(name, _typed(getattr(self, name), Extreme))
        self._freeze_extra()

    def shown(self) -> list[tuple[str, Extreme]]:
        """(metric, worst) for the metrics every rendering states."""
        return [(m, getattr(self, m)) for m in SHOWN_METRICS]


@dataclass(frozen=True)
class StressCondition(_Block):
    """One condition's scores: AUC, and sensitivity, specificity and accuracy at the operating threshold."""

    condition: str
    shift: str
    severity: int
    severity_name: str
    in_training_augmentation: bool | None  # None: unknown (no augmentation recorded), or the clean condition
    n: int
    auc: float
    sensitivity: float
    specificity: float
    accuracy: float
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    LABEL = "stress condition"

    def __post_init__(self) -> None:
        for name in ("condition", "shift", "severity_name"):
            self._check(name, isinstance(getattr(self, name), str), "a string")
        self._check("severity", _is_int(self.severity) and self.severity <= 3, "a severity from 0 to 3")
        self._check("in_training_augmentation", self.in_training_augmentation in (True, False, None),
                    "true, false or null")
        self._check("n", _is_int(self.n), "a count")
        for name in STRESS_METRICS:
            self._check(name, _is_rate(getattr(self, name)), "a number in [0, 1]")
        self._freeze_extra()


@dataclass(frozen=True)
class StressReport(_Block):
    """The stress suite's results: one row per condition ("clean" first) and the worst cases, over every shift and
    (cards from training) over the realistic acquisition family alone."""

    conditions: tuple[StressCondition, ...]
    worst_moderate: WorstCase
    worst_severe: WorstCase
    worst_acquisition_moderate: WorstCase | None = None
    worst_acquisition_severe: WorstCase | None = None
    note: str | None = None  # which images were scored (training's held-out split, or out-of-fold images)
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    LABEL = "stress"

    def __post_init__(self) -> None:
        self._check("conditions", isinstance(self.conditions, Sequence) and not isinstance(self.conditions, str),
                    "a list of conditions")
        self._freeze("conditions", tuple(_typed(c, StressCondition) for c in self.conditions))
        for name in ("worst_moderate", "worst_severe", "worst_acquisition_moderate", "worst_acquisition_severe"):
            if getattr(self, name) is not None:
                self._freeze(name, _typed(getattr(self, name), WorstCase))
        self._check("note", self.note is None or isinstance(self.note, str), "a string")
        self._freeze_extra()

    def worst_cases(self) -> list[tuple[str, WorstCase]]:
        """(what it covers, worst case) for each worst case the report holds, every shift first."""
        return [(label, w) for label, w in (
            ("moderate (severity <= 2)", self.worst_moderate), ("severe (all)", self.worst_severe),
            ("realistic acquisition family, moderate", self.worst_acquisition_moderate),
            ("realistic acquisition family, severe", self.worst_acquisition_severe)) if w is not None]

    def headline(self) -> tuple[str, WorstCase]:
        """The worst case a summary shows: the acquisition family's up to moderate severity where measured."""
        if self.worst_acquisition_moderate is not None:
            return "acquisition family, moderate", self.worst_acquisition_moderate
        return "moderate shifts", self.worst_moderate


@dataclass(frozen=True)
class StressRow:
    """One line of the stress table, as every rendering shows it."""

    condition: str
    shift: str
    family: str  # the shift's family ("-" for clean)
    severity: int
    severity_name: str
    in_augmentation: str  # "yes", "no", or "-" (unknown)
    chose_threshold: bool  # the threshold policy was fitted on it: its sensitivity and specificity are in-sample
    auc: float
    sensitivity: float
    specificity: float
    accuracy: float
    n: int


def stress_rows(report: StressReport, evidence: "ThresholdEvidence | None" = None) -> list[StressRow]:
    """The stress table: one row per condition of `report`, marking those the threshold policy (`evidence`) chose on."""
    chosen = ThresholdEvidence.conditions_chosen_on(evidence)
    return [StressRow(condition=c.condition, shift=c.shift, family=SHIFTS[c.shift].family if c.shift in SHIFTS else "-",
                      severity=c.severity, severity_name=c.severity_name,
                      in_augmentation={None: "-", True: "yes", False: "no"}[c.in_training_augmentation],
                      chose_threshold=c.condition in chosen, auc=c.auc, sensitivity=c.sensitivity,
                      specificity=c.specificity, accuracy=c.accuracy, n=c.n) for c in report.conditions]


# ---- the threshold policy

@dataclass(frozen=True)
class ThresholdEvidence(_Block):
    """How the operating threshold was chosen: the policy's name and targets, and, for the policies chosen on the
    stress suite, each condition's own threshold, the one that binds and what the choice trades."""

    name: str
    target_sensitivity: float | None = None
    shifted_sensitivity_floor: float | None = None
    max_severity: int | None = None
    held_out_shifts: tuple[str, ...] | None = None
    binding_condition: str | None = None
    per_condition_thresholds: Mapping[str, float] | None = None
    at_threshold: Mapping[str, Mapping[str, float]] | None = None  # condition -> sensitivity, specificity
    clean_only_threshold: float | None = None
    worst_specificity: float | None = None
    worst_specificity_at_clean_only: float | None = None
    specificity_cost_of_shift_floor: float | None = None
    trade: str | None = None
    youden_threshold_for_comparison: float | None = None
    at_youden: Mapping[str, float] | None = None  # sensitivity, specificity
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    LABEL = "threshold_evidence"

    def __post_init__(self) -> None:
        self._check("name", isinstance(self.name, str) and bool(self.name), "the policy's name")
        for name in ("target_sensitivity", "shifted_sensitivity_floor", "clean_only_threshold", "worst_specificity",
                     "worst_specificity_at_clean_only", "youden_threshold_for_comparison"):
            self._check(name, getattr(self, name) is None or _is_rate(getattr(self, name)), "a number in [0, 1]")
        self._check("specificity_cost_of_shift_floor", self.specificity_cost_of_shift_floor is None
                    or _is_number(self.specificity_cost_of_shift_floor), "a number")
        self._check("max_severity", self.max_severity is None or _is_int(self.max_severity), "a severity from 0 to 3")
        for name in ("binding_condition", "trade"):
            self._check(name, getattr(self, name) is None or isinstance(getattr(self, name), str), "a string")
        if self.held_out_shifts is not None:
            self._check("held_out_shifts", isinstance(self.held_out_shifts, (list, tuple))
                        and all(isinstance(s, str) for s in self.held_out_shifts), "a list of shift names")
            self._freeze("held_out_shifts", tuple(self.held_out_shifts))
        self._freeze_rates("per_condition_thresholds", self.per_condition_thresholds)
        self._freeze_rates("at_youden", self.at_youden)
        if self.at_threshold is not None:
            self._check("at_threshold", isinstance(self.at_threshold, Mapping)
                        and all(isinstance(v, Mapping) and all(map(_is_rate, v.values()))
                                for v in self.at_threshold.values()), "an object of objects of numbers in [0, 1]")
            self._freeze("at_threshold", MappingProxyType({k: MappingProxyType(dict(v))
                                                           for k, v in self.at_threshold.items()}))
        self._freeze_extra()

    def _freeze_rates(self, name: str, value: Any) -> None:
        if value is not None:
            self._check(name, isinstance(value, Mapping) and all(map(_is_rate, value.values())),
                        "an object of numbers in [0, 1]")
            self._freeze(name, MappingProxyType(dict(value)))

    @staticmethod
    def conditions_chosen_on(evidence: "ThresholdEvidence | None") -> set[str]:
        """The stress conditions a policy was chosen on ("clean" alone when it read no others, or is unknown): their
        figures at the threshold are in-sample."""
        return set((evidence.per_condition_thresholds if evidence is not None else None) or {CLEAN})
