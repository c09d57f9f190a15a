"""The model card: one typed, validated record of what a model is, how it decides and the evidence for it.

Every reader goes through `ModelCard` (and `ModelFolder.card()` for a folder on disk): each field has one
default, here, and a bad value is refused when the card is read, quoting it. Cards written before the schema
was versioned (no `schema_version`) read as version 1: their missing fields take the defaults below, and a
missing `model_id` is the folder's name. Keys this version does not know (a newer card) are kept in `extra` and
written back unchanged.

The stress suite's results and the threshold policy's evidence are typed (`StressReport`, `ThresholdEvidence`,
evidence.py: several surfaces read them); the other evidence blocks (internal validation, guard calibration...)
stay read-only mappings: documents that the Markdown card, the dashboards and the README render.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Mapping

from .. import CLASSES
from ..errors import ModelError
from ..inputs.preprocess import Preprocess
from ..safety.intended_use import INTENDED_USE
from .evidence import StressReport, ThresholdEvidence, plain
from .operating_point import DEFAULT_THRESHOLD, valid_threshold

SCHEMA_VERSION = 2
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_TYPED = {"threshold_evidence": ThresholdEvidence, "stress": StressReport}  # evidence blocks read as types
_MAPPINGS = ("input", "guard_calibration", "appearance_check", "population_check", "internal_validation",
             "data", "config", "gradcam", "subtype_policy", "validation_gate", "ensemble", "site_adaptation", "distribution",
             "external_validation", "selection")


def model_id_is_valid(model_id: Any) -> bool:
    """A registry folder name: letters, digits, '-', '_' and '.', not starting with '.'."""
    return (isinstance(model_id, str) and bool(model_id) and not model_id.startswith(".")
            and all(c.isalnum() or c in "-_." for c in model_id))


@dataclass(frozen=True)
class ModelCard:
    # identity
    model_id: str
    name: str
    version: str
    description: str = ""
    created: str = ""  # ISO 8601, UTC
    schema_version: int = SCHEMA_VERSION
    intended_use: str = INTENDED_USE
    # how it decides
    classes: tuple[str, ...] = CLASSES
    input: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)  # the preprocessing (cxr_core.inputs.preprocess.Preprocess.card_input)
    threshold: float = DEFAULT_THRESHOLD
    threshold_policy: str = "unknown"
    temperature: float = 1.0
    subtype_policy: Mapping[str, Any] | None = None  # fit-presentation: the margin below which no subtype is stated
    gradcam: Mapping[str, Any] | None = None  # fit-presentation: the heatmap's fixed scale
    validation_gate: Mapping[str, Any] | None = None
    # the input guards' thresholds (the detectors themselves are ood.npz and population.npz)
    ood_pixel_threshold: float | None = None
    ood_feature_threshold: float | None = None
    ood_feature_threshold_strong: float | None = None
    ood_val_false_alarm_rate: float | None = None  # older cards only: superseded by guard_calibration
    # evidence (documents, rendered)
    threshold_evidence: ThresholdEvidence | None = None
    ece_uncalibrated: float | None = None
    guard_calibration: Mapping[str, Any] | None = None
    appearance_check: Mapping[str, Any] | None = None  # the chest-appearance autoencoder (cxr_core.safety.appearance)
    population_check: Mapping[str, Any] | None = None
    internal_validation: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    internal_validation_kind: str = "Internal validation (patient-grouped split of the official training set)"
    external_validation: Mapping[str, Any] | None = None  # validate-external: a site it never trained on (validation.external)
    selection: Mapping[str, Any] | None = None  # why this model ships: the candidates on an external site, the choice
    stress: StressReport | None = None
    ensemble: Mapping[str, Any] | None = None
    site_adaptation: Mapping[str, Any] | None = None  # a site-adapted model: parent, site films, local evidence
    distribution: Mapping[str, Any] | None = None  # how it was trained: {"strategy", "workers", "replicas", "resumed", ...}
    # provenance
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    config: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    training_time_s: float = 0.0
    epochs_run: int | None = None
    hardware: str = "?"
    git_commit: str = "?"
    cxr_core_version: str = "?"
    reproduce_command: str = ""
    member_commands: tuple[str, ...] = ()
    parameters: int | None = None
    trainable_parameters: int | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)  # keys a newer version wrote

    def __post_init__(self) -> None:
        if not model_id_is_valid(self.model_id):
            raise ModelError(f"model_id {self.model_id!r} is invalid: expected letters, digits, '-', '_' and '.'.")
        try:
            object.__setattr__(self, "threshold", valid_threshold(self.threshold))
        except Exception as exc:
            raise ModelError(f"Model {self.model_id}: {exc}") from None
        if not isinstance(self.temperature, (int, float)) or not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ModelError(f"Model {self.model_id}: temperature {self.temperature!r} is invalid: expected a positive number.")
        classes = tuple(self.classes)
        if classes != CLASSES[:len(classes)] or len(classes) < 2:
            raise ModelError(f"Model {self.model_id}: classes {list(self.classes)!r} are invalid: expected {list(CLASSES)}.")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "member_commands", tuple(self.member_commands))
        if "image_size" not in self.input:
            raise ModelError(f"Model {self.model_id}: the card has no input block (image_size): it cannot be served.")
        for name in _MAPPINGS + ("extra",):
            value = getattr(self, name)
            if value is not None and not isinstance(value, MappingProxyType):
                if not isinstance(value, Mapping):
                    raise ModelError(f"Model {self.model_id}: card field {name!r} = {value!r} is invalid: expected an object.")
                object.__setattr__(self, name, MappingProxyType(dict(value)))
        for name, kind in _TYPED.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                if not isinstance(value, Mapping):
                    raise ModelError(f"Model {self.model_id}: card field {name!r} = {value!r} is invalid: expected an object.")
                try:
                    object.__setattr__(self, name, kind.from_dict(value))
                except ModelError as exc:
                    raise ModelError(f"Model {self.model_id}: {exc}") from None

    # ---- reading and writing
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], default_id: str = "") -> "ModelCard":
        """A card from its JSON; `default_id` (the folder's name) for cards written before model_id was stored."""
        if not isinstance(data, Mapping):
            raise ModelError(f"A model card must be a JSON object, not {type(data).__name__}.")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("model_id", default_id)
        values.setdefault("schema_version", 1)
        values.setdefault("name", values["model_id"])
        values.setdefault("version", "?")
        for key in ("threshold", "temperature", "training_time_s"):
            if key in values and values[key] is None:
                del values[key]
        extra = {k: v for k, v in data.items() if k not in known and k != "num_classes"}  # num_classes: len(classes)
        try:
            return cls(**values, extra=extra)
        except TypeError as exc:
            raise ModelError(f"The model card of {values['model_id']!r} is invalid: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: plain dicts and lists, unknown keys kept."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is not None:  # an optional block not (yet) fitted is absent, as older versions wrote it
                out[f.name] = plain(value)
        out["num_classes"] = self.num_classes
        out.update(plain(self.extra))
        return out

    def with_fields(self, **changes: Any) -> "ModelCard":
        """A copy with some fields changed (validated again); unknown keys land in `extra`."""
        known = {f.name for f in fields(self)}
        extra = {**self.extra, **{k: v for k, v in changes.items() if k not in known}}
        return replace(self, **{k: v for k, v in changes.items() if k in known}, extra=extra)

    # ---- derived, one place each
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def display_name(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def passed_gate(self) -> bool:
        """False for a model registered although it failed its validation gate (an experiment: hidden from the
        model picker unless asked for, never active); models from before the gate was recorded passed it."""
        return bool((self.validation_gate or {}).get("passed", True))

    @property
    def reduced_budget(self) -> str | None:
        """The budget of a reduced run ("tiny", "candidate", or "subset" for part of the data): never the site's
        model, whatever its figures. None for a full run."""
        budget = self.config.get("reduced_budget")
        if budget:
            return str(budget)
        return "subset" if float((self.config.get("data") or {}).get("subset_fraction", 1.0)) < 1.0 else None

    @property
    def parent_model_id(self) -> str | None:
        """A site-adapted model's parent (None for any other model)."""
        return (self.site_adaptation or {}).get("parent_model_id")

    @property
    def external_label(self) -> str | None:
        """How every surface names the external figures, "External (site A, another period's patients)"; None
        without external validation (cxr_core.validation.external)."""
        block = self.external_validation
        if not block:
            return None
        about = block.get("about")
        return f"External ({block.get('site', '?')}{', ' + about if about else ''})"

    @property
    def subtype_margin(self) -> float | None:
        """None: no margin fitted, so every PNEUMONIA states its likelier subtype."""
        margin = (self.subtype_policy or {}).get("margin")
        return None if margin is None else float(margin)

    @property
    def cam_scale(self) -> float | None:
        """None: no fixed scale fitted, so each heatmap is drawn on its own peak."""
        scale = (self.gradcam or {}).get("scale")
        return None if scale is None else float(scale)

    @property
    def preprocess(self) -> Preprocess:
        """The model's input preprocessing, exactly as it was trained."""
        return Preprocess.from_card_input(self.input)

    @property
    def binary_metrics(self) -> Mapping[str, Any]:
        return self.internal_validation.get("binary") or _EMPTY

    @property
    def three_class_metrics(self) -> Mapping[str, Any]:
        return self.internal_validation.get("three_class") or _EMPTY

    @property
    def data_root(self) -> str | None:
        return self.data.get("root")

