"""Regenerate the figures in docs/experiments/README.md from each experiment's results.csv.

    python docs/update_experiments.py          # rewrite the generated block
    python docs/update_experiments.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent / "experiments"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"
METRICS = [("val_auc", "AUC"), ("val_binary_accuracy", "binary acc."), ("val_3class_accuracy", "3-class acc."),
           ("val_macro_f1", "macro-F1"), ("recall_VIRAL", "VIRAL recall")]


def figures() -> str:
    lines = ["| experiment | run | " + " | ".join(label for _, label in METRICS) + " |",
             "|---|---|" + "---|" * len(METRICS)]
    spread = []
    for results in sorted(HERE.glob("*/results.csv")):
        frame = pd.read_csv(results)
        for _, row in frame.iterrows():
            lines.append(f"| {row['experiment']} | {row['label']} | "
                         + " | ".join(f"{row[key]:.3f}" for key, _ in METRICS) + " |")
        if results.parent.name == "exp-cv":
            spread = [f"{label} {frame[key].mean():.3f} +/- {frame[key].std():.3f}" for key, label in METRICS]
    out = ["Every run of every experiment (internal validation, reduced budget), from the results.csv files:", "", *lines]
    if spread:
        out += ["", f"5-fold CV (patient-grouped), mean +/- SD over folds: {', '.join(spread)}."]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    path = HERE / "README.md"
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = f"{head}{START}\n{figures()}{END}{tail}"
    if args.check:
        print("up to date" if new == text else "out of date: run python docs/update_experiments.py")
        return 0 if new == text else 1
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
