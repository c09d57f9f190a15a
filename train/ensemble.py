"""A cross-validated ensemble: one member per fold, assembled from out-of-fold evidence.

For a config with `data.folds = k >= 2`:
1. member i is the ordinary run `python -m train --config C --fold i` (train.pipeline), trained on
   every fold but i and validated on fold i, so each training image gets exactly one
   out-of-fold (OOF) score; members are never registered on their own;
2. the ensemble averages the members' logits (see `cxr_core.models.merge_members`: one Keras graph,
   Grad-CAM averaged across members);
3. temperature, the stress suite and the operating threshold come from the OOF logits only.
"""

from __future__ import annotations

from typing import Any, Callable

from cxr_core.config import TrainConfig, apply_overrides
from cxr_core.errors import ConfigError


def member_config(config: TrainConfig, fold: int) -> TrainConfig:
    """The config of member `fold` (0-based): the same run whichever command starts it."""
    k = config.data.folds
    if k < 2:
        raise ConfigError(f"data.folds = {k!r}: an ensemble needs at least 2 folds.")
    if not 0 <= fold < k:
        raise ConfigError(f"--fold {fold!r} is invalid: expected an integer from 0 to {k - 1} (data.folds = {k}).")
    # A member's own threshold is informational (members are not registered); the ensemble's policy
    # needs every member's OOF scores.
    return apply_overrides(config, {"name": f"{config.name}-fold{fold + 1}", "data.fold": fold,
                                    "train.threshold_policy": "sensitivity"})


def train_members(config: TrainConfig, runs_dir: Any, command: str, log: Callable[[str], None] = print) -> list[Any]:
    """Train (or resume, or skip when finished) every member in fold order; their RunResults."""
    from train.pipeline import train

    results = []
    for fold in range(config.data.folds):
        log(f"[{config.name}] member {fold + 1} of {config.data.folds}")
        results.append(train(member_config(config, fold), runs_dir=runs_dir, register=False, command=command, log=log))
        if results[-1].state != "finished":
            break
    return results
