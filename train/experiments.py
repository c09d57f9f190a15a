"""Experiments: several training runs from one config file, with their results collected.

A config with an `[experiment]` table is an experiment; the rest of the file is the base run.

    [experiment]
    kind = "runs"        # a list of variants ([[experiment.runs]] label + set = {dotted overrides});
                         # `from_previous = true` starts a variant from the previous one's weights
    kind = "grid"        # [experiment.grid] two dotted keys with value lists: every combination
    kind = "cv"          # k patient-grouped, stratified folds of the base config (folds = 5)

Every run goes through train.pipeline.train (register=False: experiments never touch the model
registry). Results go to docs/experiments/<name>/: results.csv, results.md, plots (PNG) and each
run's raw per-epoch log (history_<run>.csv).
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cxr_core.config import TrainConfig, apply_overrides
from cxr_core.errors import ConfigError
from cxr_core.model.registry import Registry
from cxr_core.settings import PROJECT_ROOT
from cxr_core.validation.dataset import grouped_folds, index_dataset, subset
from cxr_core.fitting.distribute import current
from train.pipeline import train
from train.run_folder import RunFolder, read_history

RESULTS_DIR = PROJECT_ROOT / "docs" / "experiments"
KINDS = ("runs", "grid", "cv")
COLUMNS = ["experiment", "run", "label", "val_binary_accuracy", "val_auc", "val_normal_recall", "val_3class_accuracy",
           "val_macro_f1", "recall_NORMAL", "recall_BACTERIAL", "recall_VIRAL", "trainable_parameters", "epochs_run",
           "train_minutes", "overrides"]


def read_experiment(path: str | Path) -> dict[str, Any] | None:
    """The [experiment] table of a config file, or None for a plain single-run config."""
    raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    spec = raw.get("experiment")
    if spec is not None:
        validate_spec(spec)
    return spec


def validate_spec(spec: dict[str, Any]) -> None:
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"experiment.kind = {kind!r} is invalid: expected one of {KINDS}.")
    if kind == "runs" and not spec.get("runs"):
        raise ConfigError("experiment.kind = \"runs\" needs at least one [[experiment.runs]] entry.")
    if kind == "grid":
        grid = spec.get("grid", {})
        if len(grid) != 2 or not all(isinstance(v, list) and v for v in grid.values()):
            raise ConfigError(f"experiment.grid = {grid!r}: expected two dotted keys, each with a list of values.")
    if kind == "cv" and not (isinstance(spec.get("folds", 5), int) and 2 <= spec.get("folds", 5) <= 20):
        raise ConfigError(f"experiment.folds = {spec.get('folds')!r}: expected an integer from 2 to 20.")


def plan(spec: dict[str, Any], base: TrainConfig) -> list[tuple[str, dict[str, Any], bool]]:
    """(label, overrides, from_previous) of every run, in order (cv: one entry per fold)."""
    kind = spec["kind"]
    if kind == "runs":
        return [(r.get("label", f"run {i + 1}"), dict(r.get("set", {})), bool(r.get("from_previous", False)))
                for i, r in enumerate(spec["runs"])]
    if kind == "grid":
        (k1, v1), (k2, v2) = spec["grid"].items()
        return [(f"{k1.split('.')[-1]}={a}, {k2.split('.')[-1]}={b}", {k1: a, k2: b}, False) for a, b in itertools.product(v1, v2)]
    return [(f"fold {i + 1}", {}, False) for i in range(int(spec.get("folds", 5)))]


def run_experiment(spec: dict[str, Any], base: TrainConfig, runs_dir: str | Path, registry: Registry | None = None,
                   command: str = "", results_dir: str | Path | None = None, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    validate_spec(spec)
    out = Path(results_dir or RESULTS_DIR) / base.name
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    folds = None
    if spec["kind"] == "cv":
        records = subset(index_dataset(base.data.root), base.data.subset_fraction, base.data.split_seed)
        folds = [([records[i] for i in tr], [records[i] for i in va])
                 for tr, va in grouped_folds(records, int(spec.get("folds", 5)), base.data.split_seed)]
    previous_model: Path | None = None
    started = time.time()
    for i, (label, overrides, from_previous) in enumerate(plan(spec, base)):
        config = apply_overrides(base, {**overrides, "name": f"{base.name}-{i + 1:02d}"})
        if from_previous and previous_model is not None:
            config = apply_overrides(config, {"model.init_from": str(previous_model)})
        log(f"[{base.name}] {i + 1}: {label}")
        split = folds[i] if folds is not None else None
        t0 = time.time()
        result = train(config, runs_dir=runs_dir, register=False, command=command, split=split, log=log)
        previous_model = RunFolder(result.run_dir).model.model_file  # the chief's, in the shared run folder
        if not current().is_chief:  # another worker of a cluster: the chief collects the results
            continue
        rows.append(_row(base.name, config.name, label, result, overrides, time.time() - t0))
        if RunFolder(result.run_dir).history_file.exists():
            shutil.copy(RunFolder(result.run_dir).history_file, out / f"history_{config.name}.csv")
        write_results(out, spec, rows, command, time.time() - started)
    return rows


def _row(experiment: str, run: str, label: str, result: Any, overrides: dict, seconds: float) -> dict[str, Any]:
    m = result.metrics
    folder = RunFolder(result.run_dir).model
    card = folder.card() if folder.card_file.exists() else None
    recall = m.get("three_class", {}).get("recall", {})
    return {"experiment": experiment, "run": run, "label": label,
            "val_binary_accuracy": m["binary"]["accuracy"], "val_auc": m["binary"]["auc"],
            "val_normal_recall": m["binary"]["specificity"], "val_3class_accuracy": m["three_class"]["accuracy"],
            "val_macro_f1": m["three_class"]["macro_f1"], "recall_NORMAL": recall.get("NORMAL"),
            "recall_BACTERIAL": recall.get("BACTERIAL"), "recall_VIRAL": recall.get("VIRAL"),
            "trainable_parameters": card and card.trainable_parameters, "epochs_run": card and card.epochs_run,
            "train_minutes": seconds / 60, "overrides": json.dumps(overrides)}


def write_results(out: Path, spec: dict[str, Any], rows: list[dict[str, Any]], command: str, seconds: float) -> None:
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    shown = ["label", "val_binary_accuracy", "val_auc", "val_normal_recall", "val_3class_accuracy", "val_macro_f1",
             "recall_NORMAL", "recall_BACTERIAL", "recall_VIRAL", "trainable_parameters", "epochs_run", "train_minutes"]
    lines = [f"# {rows[0]['experiment']}", "", f"Command: `{command}`", "",
             f"Total time: {seconds / 60:.1f} min. All figures are internal validation (patient-grouped split of the "
             "official training set).", "", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in shown) + " |" for r in rows]
    if spec["kind"] == "cv":
        for key in ("val_binary_accuracy", "val_auc", "val_3class_accuracy"):
            v = np.array([r[key] for r in rows])
            lines.append(f"\n**{key}**: mean {v.mean():.3f}, standard deviation {v.std(ddof=1) if len(v) > 1 else 0:.3f} "
                         f"over {len(v)} folds.")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot_results(out, spec, rows)


def plot_results(out: Path, spec: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """PNG plots: validation curves of every run overlaid; the grid heatmap; the CV spread."""
    import matplotlib  # lazy: heavy

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: heavy

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        h = read_history(out / f"history_{r['run']}.csv")
        if h:
            epochs = [int(x["epoch"]) + 1 for x in h]
            axes[0].plot(epochs, [x.get("val_loss") for x in h], marker="o", label=r["label"])
            axes[1].plot(epochs, [x.get("val_auc") for x in h], marker="o", label=r["label"])
    axes[0].set(title="validation loss", xlabel="epoch")
    axes[1].set(title="validation AUC (binary)", xlabel="epoch")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)
    if spec["kind"] == "grid":
        (k1, v1), (k2, v2) = spec["grid"].items()
        grid = grid_values(rows, k1, v1, k2, v2, "val_auc")
        fig, ax = plt.subplots(figsize=(6, 4.5))
        im = ax.imshow(grid, cmap="viridis")
        ax.set_xticks(range(len(v2)), [str(v) for v in v2])
        ax.set_yticks(range(len(v1)), [str(v) for v in v1])
        ax.set(xlabel=k2, ylabel=k1, title="validation AUC")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "" if np.isnan(v) else f"{v:.3f}", ha="center", va="center", color="w", fontsize=8)
        fig.colorbar(im)
        fig.tight_layout()
        fig.savefig(out / "grid_heatmap.png", dpi=110)
        plt.close(fig)
    if spec["kind"] == "cv":
        fig, ax = plt.subplots(figsize=(6, 4))
        keys = ["val_binary_accuracy", "val_auc", "val_3class_accuracy"]
        ax.boxplot([[r[k] for r in rows] for k in keys], tick_labels=["binary acc.", "AUC", "3-class acc."])
        for i, k in enumerate(keys):
            ax.scatter([i + 1] * len(rows), [r[k] for r in rows], color="k", s=12)
        ax.set(title=f"{len(rows)}-fold patient-grouped CV")
        fig.tight_layout()
        fig.savefig(out / "cv_spread.png", dpi=110)
        plt.close(fig)


def grid_values(rows: list[dict[str, Any]], k1: str, v1: list, k2: str, v2: list, metric: str) -> np.ndarray:
    grid = np.full((len(v1), len(v2)), np.nan)
    for r in rows:
        o = json.loads(r["overrides"])
        if k1 in o and k2 in o:
            grid[v1.index(o[k1]), v2.index(o[k2])] = r[metric]
    return grid
