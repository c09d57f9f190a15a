"""Model cards: the JSON the code reads and the Markdown people read, from one dict."""

from __future__ import annotations

from typing import Any

from . import CLASSES, INTENDED_USE


def render_markdown(card: dict[str, Any]) -> str:
    m = card.get("internal_validation", {})
    b, t = m.get("binary", {}), m.get("three_class", {})
    ci = lambda v: f"[{v[0]:.3f}, {v[1]:.3f}]" if v else "n/a"  # noqa: E731
    data = card.get("data", {})
    lines = [
        f"# Model card: {card.get('name')} v{card.get('version')}",
        "",
        f"**Intended use.** {INTENDED_USE}",
        "",
        "Trained on pediatric (1 to 5 years) frontal chest radiographs from one centre (Guangzhou Women and "
        "Children's Medical Center, via the Kermany et al. 2018 release). Performance on adults, other "
        "views, other hospitals or other devices is unknown.",
        "",
        "## Outputs",
        f"- Classes: {', '.join(card.get('classes', CLASSES))}; P(pneumonia) = 1 - P(NORMAL).",
        f"- Operating threshold on P(pneumonia): **{card.get('threshold', float('nan')):.3f}** "
        f"(policy `{card.get('threshold_policy')}`, chosen on internal validation).",
        f"- Temperature scaling T = {card.get('temperature', 1.0):.3f} (fitted on internal validation).",
        "",
        "## Internal validation (patient-grouped split of the official training set)",
        f"n = {m.get('n')} images ({m.get('class_counts')}). These figures flatter: same hospital and period as training.",
        "",
        "| metric | value | 95 % CI |",
        "|---|---|---|",
        f"| binary accuracy | {b.get('accuracy', float('nan')):.3f} | {ci(b.get('accuracy_ci95'))} |",
        f"| binary AUC | {b.get('auc', float('nan')):.3f} | {ci(b.get('auc_ci95'))} |",
        f"| sensitivity | {b.get('sensitivity', float('nan')):.3f} | |",
        f"| specificity | {b.get('specificity', float('nan')):.3f} | |",
        f"| ECE (calibrated) | {b.get('ece', float('nan')):.3f} | |",
        f"| 3-class accuracy | {t.get('accuracy', float('nan')):.3f} | {ci(t.get('accuracy_ci95'))} |",
        f"| 3-class macro-F1 | {t.get('macro_f1', float('nan')):.3f} | |",
        f"| bacterial-vs-viral AUC | {t.get('bacterial_vs_viral_auc', float('nan')):.3f} | |",
        "",
        f"ECE before calibration: {card.get('ece_uncalibrated', float('nan')):.3f}.",
        "",
        "## Training data",
        f"- Folder: `{data.get('root')}` (fingerprint `{data.get('fingerprint')}`)",
        f"- Train: {data.get('n_train')} images {data.get('train_counts')}; validation: {data.get('n_val')} images "
        f"{data.get('val_counts')}; split seed {data.get('split_seed')}, grouped by patient.",
        "",
        "## Training",
        f"- Time: {card.get('training_time_s', 0) / 60:.1f} min on {card.get('hardware', '?')}; epochs run: {card.get('epochs_run')}.",
        f"- Git commit: `{card.get('git_commit')}`",
        "- Reproduce:",
        "",
        "```",
        card.get("reproduce_command", ""),
        "```",
        "",
        "## Config",
        "",
        "```json",
        _json(card.get("config", {})),
        "```",
        "",
    ]
    return "\n".join(lines)


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2)
