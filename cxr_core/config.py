"""Typed training configuration, read from TOML files under `train/configs/`.

One `TrainConfig` describes a whole run: data, model, augmentation and optimisation. Every field
is validated on load with an error that quotes the bad value, so a typo in a TOML file or in the
app's form fails before any training starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .inputs.preprocess import IMAGE_SIZES, INTENSITY_POLICIES, Preprocess

BACKBONES = ("cxrnet", "resnet50", "efficientnetb0", "mobilenetv2", "densenet121")
BALANCING = ("none", "augment_x2", "augment_x4", "balanced", "balanced_strong")
LR_SCHEDULES = ("constant", "plateau", "cosine")
THRESHOLD_POLICIES = ("youden", "sensitivity", "robust_sensitivity", "sensitivity_then_specificity")
STRESS_POLICIES = ("robust_sensitivity", "sensitivity_then_specificity")  # chosen on held-out stress scores


@dataclass
class DataConfig:
    root: str = "../shared/data/kermany-cxr-224/train"
    image_size: int = 224
    pad_to_square: bool = False
    intensity: str = "percentile"  # per-image intensity policy, see cxr_core.inputs.preprocess
    val_fraction: float = 0.15  # with folds = 0: one patient-grouped split of about this size
    folds: int = 0  # >= 2: k-fold cross-validation; the run trains on all folds but `fold`
    fold: int = 0  # which fold is this run's validation (0-based)
    split_seed: int = 42
    subset_fraction: float = 1.0
    balancing: str = "none"

    def validate(self) -> None:
        _check(IMAGE_SIZES[0] <= self.image_size <= IMAGE_SIZES[1], "data.image_size", self.image_size,
               f"an integer from {IMAGE_SIZES[0]} to {IMAGE_SIZES[1]}")
        _check(0.02 <= self.val_fraction <= 0.5, "data.val_fraction", self.val_fraction, "a number from 0.02 to 0.5")
        _check(self.intensity in INTENSITY_POLICIES, "data.intensity", self.intensity, f"one of {INTENSITY_POLICIES}")
        _check(self.folds == 0 or 2 <= self.folds <= 20, "data.folds", self.folds, "0 (one split) or an integer from 2 to 20")
        _check(0 <= self.fold < max(1, self.folds), "data.fold", self.fold,
               f"an integer from 0 to {max(0, self.folds - 1)} (data.folds = {self.folds})")
        _check(0.0 < self.subset_fraction <= 1.0, "data.subset_fraction", self.subset_fraction, "a number in (0, 1]")
        _check(self.balancing in BALANCING, "data.balancing", self.balancing, f"one of {BALANCING}")

    def preprocess(self) -> Any:
        """The `Preprocess` callable this data section describes (the model card stores the same)."""

        return Preprocess(self.image_size, self.pad_to_square, self.intensity)


@dataclass
class ModelConfig:
    backbone: str = "cxrnet"
    weights: str = "none"  # "none", "imagenet" or a path to a weights file
    num_classes: int = 3
    filters: list[int] = field(default_factory=lambda: [32, 64, 128, 256])  # cxrnet only
    trainable_layers: int = -1  # backbone layers left trainable from the top; -1 = all, 0 = frozen
    freeze_until: str = ""  # alternative to trainable_layers: freeze every layer up to this name
    dense_units: int = 0  # an extra fully connected layer in the head (seed 000's best model)
    dropout: float = 0.3
    init_from: str = ""  # start from the weights of an earlier stage's model.keras

    def validate(self) -> None:
        _check(self.backbone in BACKBONES, "model.backbone", self.backbone, f"one of {BACKBONES}")
        _check(self.num_classes in (2, 3), "model.num_classes", self.num_classes, "2 or 3")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "a number in [0, 1)")
        _check(self.dense_units >= 0, "model.dense_units", self.dense_units, "0 or a positive integer")
        _check(self.trainable_layers >= -1, "model.trainable_layers", self.trainable_layers, "-1, 0 or a positive integer")
        _check(
            bool(self.filters) and all(isinstance(f, int) and 4 <= f <= 1024 for f in self.filters),
            "model.filters", self.filters, "a non-empty list of integers from 4 to 1024",
        )
        w = self.weights
        _check(isinstance(w, str) and w != "", "model.weights", w, '"none", "imagenet" or a weights file path')


@dataclass
class AugmentConfig:
    """Augmentation strengths; `strength` scales all of them (0 turns augmentation off)."""

    strength: float = 1.0
    rotation: float = 0.03  # fraction of a full turn
    translate: float = 0.08
    zoom: float = 0.12
    contrast: float = 0.3
    brightness: float = 0.15
    horizontal_flip: bool = False
    blur: float = 0.0  # probability-like factor for RandomGaussianBlur
    blur_sigma: float = 1.0  # its largest sigma in model-input pixels (1.0: the original 3 x 3 kernel)
    borders: float = 0.0  # probability of collimation bands on an image
    burned_in_text: float = 0.0  # probability of burned-in side marker / annotation text on an image

    def validate(self) -> None:
        _check(0.0 <= self.strength <= 5.0, "augment.strength", self.strength, "a number from 0 to 5")
        for name in ("rotation", "translate", "zoom", "contrast", "brightness", "blur", "borders", "burned_in_text"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"augment.{name}", value, "a number from 0 to 1")
        _check(0.3 <= self.blur_sigma <= 5.0, "augment.blur_sigma", self.blur_sigma, "a number from 0.3 to 5")


@dataclass
class OptimConfig:
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    class_weights: bool = False
    label_smoothing: float = 0.0
    lr_schedule: str = "constant"
    early_stopping_patience: int = 0  # 0 = off
    plateau_patience: int = 2
    seed: int = 1
    seeds: list[int] = field(default_factory=list)  # >= 2 seeds: an ensemble of this recipe, one member per seed
    threshold_policy: str = "youden"
    target_sensitivity: float = 0.95
    shifted_sensitivity_floor: float = 0.90  # sensitivity_then_specificity: the floor under held-out shifts
    min_val_auc_to_register: float = 0.0  # a run below this is not registered

    def validate(self) -> None:
        _check(1 <= self.epochs <= 1000, "train.epochs", self.epochs, "an integer from 1 to 1000")
        _check(1 <= self.batch_size <= 1024, "train.batch_size", self.batch_size, "an integer from 1 to 1024")
        _check(0.0 < self.learning_rate <= 1.0, "train.learning_rate", self.learning_rate, "a number in (0, 1]")
        _check(0.0 <= self.weight_decay < 1.0, "train.weight_decay", self.weight_decay, "a number in [0, 1)")
        _check(0.0 <= self.label_smoothing < 0.5, "train.label_smoothing", self.label_smoothing, "a number in [0, 0.5)")
        _check(self.lr_schedule in LR_SCHEDULES, "train.lr_schedule", self.lr_schedule, f"one of {LR_SCHEDULES}")
        _check(self.early_stopping_patience >= 0, "train.early_stopping_patience", self.early_stopping_patience, ">= 0")
        _check(self.threshold_policy in THRESHOLD_POLICIES, "train.threshold_policy", self.threshold_policy, f"one of {THRESHOLD_POLICIES}")
        _check(0.5 <= self.target_sensitivity < 1.0, "train.target_sensitivity", self.target_sensitivity, "a number in [0.5, 1)")
        _check(0.5 <= self.shifted_sensitivity_floor <= self.target_sensitivity, "train.shifted_sensitivity_floor",
               self.shifted_sensitivity_floor, f"a number from 0.5 to train.target_sensitivity ({self.target_sensitivity})")
        _check(not self.seeds or (2 <= len(self.seeds) <= 20 and len(set(self.seeds)) == len(self.seeds)
                                  and all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds)),
               "train.seeds", self.seeds, "[] (one model) or 2 to 20 distinct integers (an ensemble, one member per seed)")


@dataclass
class GuardsConfig:
    """The budget of the input guards fitted after training: the chest-appearance autoencoder's epochs and its
    minimum number of updates (a tiny training set still gets them). A smaller budget fits a weaker check; the card
    records the recipe used."""

    appearance_epochs: int = 40
    appearance_min_steps: int = 240

    def validate(self) -> None:
        _check(1 <= self.appearance_epochs <= 1000, "guards.appearance_epochs", self.appearance_epochs,
               "an integer from 1 to 1000")
        _check(1 <= self.appearance_min_steps <= 100_000, "guards.appearance_min_steps", self.appearance_min_steps,
               "an integer from 1 to 100000")


@dataclass
class TrainConfig:
    name: str = "run"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    guards: GuardsConfig = field(default_factory=GuardsConfig)
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    reduced_budget: str = ""  # the [budget.NAME] applied (apply_budget): its model is never the site's model

    def validate(self) -> "TrainConfig":
        _check(
            bool(self.name) and all(c.isalnum() or c in "-_." for c in self.name),
            "name", self.name, "letters, digits, '-', '_' or '.'",
        )
        for part in (self.data, self.model, self.augment, self.train, self.guards):
            part.validate()
        _check(not (self.train.seeds and self.data.folds), "train.seeds", self.train.seeds,
               "[] when data.folds is set: an ensemble has members per fold or per seed, not both")
        return self

    def member_count(self) -> int:
        """How many members its ensemble has (train.ensemble): k folds, one per seed, or 0 for a single model."""
        return self.data.folds if self.data.folds >= 2 else len(self.train.seeds)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("budgets")
        return d

    def fingerprint(self) -> str:
        """Short hash of everything that changes the result (not the name or description)."""
        d = self.to_dict()
        d.pop("name"), d.pop("description")
        if not d["reduced_budget"]:
            d.pop("reduced_budget")  # a full run's fingerprint as before the field existed
        if not d["train"]["seeds"]:
            d["train"].pop("seeds")  # likewise for a single model
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

_SECTIONS = {"data": DataConfig, "model": ModelConfig, "augment": AugmentConfig, "train": OptimConfig,
             "guards": GuardsConfig}


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Build and validate a TrainConfig; unknown keys are errors (a typo must not pass silently)."""
    raw = dict(raw)
    kwargs: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        values = raw.pop(section, {}) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table, got {values!r}.")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"Unknown key(s) in [{section}]: {', '.join(unknown)}. Known: {', '.join(known)}.")
        kwargs[section] = cls(**{k: _coerce(section, k, v, known[k]) for k, v in values.items()})
    budgets = raw.pop("budget", {}) or {}
    for key in ("name", "description", "reduced_budget"):
        if key in raw:
            kwargs[key] = str(raw.pop(key))
    raw.pop("experiment", None)  # read by train.experiments, not part of a single run
    if raw:
        raise ConfigError(f"Unknown top-level key(s): {', '.join(sorted(raw))}.")
    return TrainConfig(**kwargs, budgets=budgets).validate()


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {str(path)!r} is not valid TOML: {exc}.") from None
    return config_from_dict(raw)


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Return a copy with dotted-key overrides applied, e.g. {"train.epochs": 3}."""
    raw = config.to_dict()
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if not key:
            raw[section] = value
            continue
        if section not in _SECTIONS:
            raise ConfigError(f"Override {dotted!r}: unknown section {section!r}.")
        raw[section][key] = value
    new = config_from_dict(raw)
    new.budgets = config.budgets
    return new


def apply_budget(config: TrainConfig, budget: str) -> TrainConfig:
    """Apply a named `[budget.NAME]` table of the config (reduced image size, subset, epochs)."""
    if budget not in config.budgets:
        raise ConfigError(f"Budget {budget!r} is not defined in this config; defined: {sorted(config.budgets) or 'none'}.")
    flat = _flatten(config.budgets[budget])
    gate = flat.get("train.min_val_auc_to_register")
    if gate is not None and float(gate) < config.train.min_val_auc_to_register:
        raise ConfigError(f"Budget {budget!r} lowers the validation gate ({gate} < "
                          f"{config.train.min_val_auc_to_register}): no budget may; a reduced run is an experiment.")
    # A reduced run gets its own name, so it never registers under the full recipe's name.
    return apply_overrides(config, {"name": f"{config.name}-{budget}", "reduced_budget": budget, **flat})


def parse_override(text: str) -> tuple[str, Any]:
    """Parse `section.key=value` (value as TOML: 3, 1e-4, true, "resnet50", [32, 64])."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"Override {text!r} is not of the form section.key=value.")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip(), parsed


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _coerce(section: str, key: str, value: Any, fld: dataclasses.Field) -> Any:
    """Coerce TOML values to the field's type (int -> float is fine, anything else is an error)."""
    default = fld.default if fld.default is not dataclasses.MISSING else fld.default_factory()  # type: ignore[misc]
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise ConfigError(f"{section}.{key} = {value!r}: expected an integer.")
    if not isinstance(value, expected):
        raise ConfigError(f"{section}.{key} = {value!r}: expected {expected.__name__}.")
    return value


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r} is invalid: expected {expected}.")
