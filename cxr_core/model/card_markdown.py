"""A model card's Markdown (MODEL_CARD.md and the README's shipped-model section), rendered from the ModelCard."""

from __future__ import annotations

import json
from typing import Any

from ..formatting import ci, with_ci
from ..safety.intended_use import INTENDED_USE, TRAINED_ON, UNKNOWN_ELSEWHERE
from .card import ModelCard
from .evidence import CLEAN, stress_rows


def render_markdown(card: ModelCard) -> str:
    m = card.internal_validation
    b, t = m.get("binary", {}), m.get("three_class", {})
    data = card.data
    ensemble = card.ensemble or {}
    members = ensemble.get("members")
    cross_validated = bool(members) and (data.get("folds") or 0) >= 2
    evidence = (f"out-of-fold scores of {members} patient-grouped folds" if cross_validated else
                f"internal validation, scored by the mean of {members} members" if members else "internal validation")
    chosen_on = (f"{card.external_validation['n']} films of {card.external_validation['site']} (external)"
                 if card.threshold_policy == "external_sensitivity" and card.external_validation else evidence)
    split = ([f"- {data.get('n')} images {data.get('counts')} in {data.get('folds')} patient-grouped, stratified folds "
              f"(seed {data.get('split_seed')}): each member trained on {data.get('folds', 1) - 1} folds; every image "
              "is scored once, out-of-fold, by the member that never trained on it."] if cross_validated else
             [f"- Train: {data.get('n_train')} images {data.get('train_counts')}; validation: {data.get('n_val')} "
              f"images {data.get('val_counts')}; split seed {data.get('split_seed')}, grouped by patient."] +
             ([f"- {members} members, the same recipe with seeds {ensemble.get('seeds')}, each trained on the same "
               "training images; the model averages their logits, and every figure is the average's."]
              if members else []))
    lines = [
        f"# Model card: {card.name} v{card.version}",
        "",
        f"**Intended use.** {INTENDED_USE}",
        "",
        *([f"**Reduced-budget run (`{card.reduced_budget}`)**: an experiment, never the site's model, whatever its "
           "figures.", ""] if card.reduced_budget else []),
        *([f"**Site-adapted** from `{card.parent_model_id}`: {card.description}"
           + (f" It adapts {card.site_adaptation['members_adapted']}." if card.site_adaptation.get("members_adapted")
              else ""), ""] if card.site_adaptation else []),
        f"{TRAINED_ON} (Guangzhou Women and Children's Medical Center, via the Kermany et al. 2018 release). "
        f"{UNKNOWN_ELSEWHERE}",
        "",
        "## Outputs",
        f"- Classes: {', '.join(card.classes)}; P(pneumonia) = 1 - P(NORMAL).",
        f"- Operating threshold on P(pneumonia): **{card.threshold:.3f}** "
        f"(policy `{card.threshold_policy}`, chosen on {chosen_on}).",
        f"- Temperature scaling T = {card.temperature:.3f} (fitted on {evidence}).",
        *policy_lines(card),
        *subtype_lines(card),
        "",
        f"## {card.internal_validation_kind}",
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
        f"ECE before calibration: {_num(card.ece_uncalibrated)}. "
        "CIs: percentile bootstrap over images (1,000 resamples).",
        "",
        *external_section(card),
        *selection_section(card),
        *_stress_lines(card),
        *_guard_section(card),
        "## Training data",
        f"- Folder: `{data.get('root')}` (fingerprint `{data.get('fingerprint')}`)",
        *split,
        "",
        "## Training",
        f"- Time: {card.training_time_s / 60:.1f} min on {card.hardware}; epochs run: {card.epochs_run}.",
        f"- Git commit: `{card.git_commit}`",
        "- Reproduce:",
        "",
        "```",
        card.reproduce_command,
        "```",
        *(["", "Each member alone (the same runs the command above trains in turn):", "", "```",
           *card.member_commands, "```"] if card.member_commands else []),
        "",
        "## Config",
        "",
        "```json",
        _json(dict(card.config)),
        "```",
        "",
    ]
    return "\n".join(lines)

README_START, README_END = "<!-- shipped-model:start -->", "<!-- shipped-model:end -->"


def readme_section(card: ModelCard, model_dir: str) -> str:
    """The README's "shipped model" figures, generated from the card (`python -m cxr_core models --markdown`)."""
    m = card.internal_validation
    b, t = m.get("binary", {}), m.get("three_class", {})
    kind = card.internal_validation_kind
    lines = [
        f"`{model_dir}` (active): {card.description}",
        "",
        f"Trained in {card.training_time_s / 60:.0f} min on {card.hardware} "
        f"(git commit `{card.git_commit[:12]}`). Reproduce with:",
        "",
        "```bash",
        card.reproduce_command,
        "```",
        "",
        f"{kind}: n = {m.get('n')} images, 95 % bootstrap CIs. These figures flatter: the images share the hospital "
        "and period of training.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| binary accuracy (threshold {b.get('threshold', card.threshold):.3f}) "
        f"| {with_ci(b.get('accuracy', float('nan')), b.get('accuracy_ci95'))} |",
        f"| binary AUC | {with_ci(b.get('auc', float('nan')), b.get('auc_ci95'))} |",
        f"| sensitivity / specificity | {b.get('sensitivity', float('nan')):.3f} / {b.get('specificity', float('nan')):.3f} |",
        f"| 3-class accuracy | {with_ci(t.get('accuracy', float('nan')), t.get('accuracy_ci95'))} |",
        f"| bacterial-vs-viral AUC | {t.get('bacterial_vs_viral_auc', float('nan')):.3f} |",
        f"| ECE after temperature scaling (T = {card.temperature:.2f}) | {b.get('ece', float('nan')):.3f} "
        f"({_num(card.ece_uncalibrated)} before) |",
        *guard_lines(card),
    ]
    pop = card.population_check or {}
    if pop.get("fitted"):
        lines.append(f"| adult-film check: detection / pediatric false alarms (patient-grouped {pop['folds']}-fold CV) | "
                     f"{pop['cv_adult_detection_rate']:.1%} / {pop['cv_pediatric_false_alarm_rate']:.1%} |")
    stress = card.stress
    if stress:
        worst = lambda w: ", ".join(f"{m} {e.value:.3f} (`{e.condition}`)" for m, e in w.shown())  # noqa: E731
        acquisition = stress.worst_acquisition_moderate
        lines += ["", f"Stress suite ({stress.note or 'held-out images'}, at the threshold chosen in training, "
                  f"{trained_threshold(card):.3f}), worst case "
                  f"up to moderate severity: over every shift, {worst(stress.worst_moderate)}"
                  + (f"; over the realistic acquisition family (soft, glare, unsharp, tone_curve, annotation), "
                     f"{worst(acquisition)}" if acquisition is not None else "")
                  + ". The full table is in the model card and on the Dashboards page (Robustness)."]
    lines += ["", *external_section(card, "###"), *selection_section(card, "###"), f"Operating threshold **{card.threshold:.3f}** (policy "
              f"`{card.threshold_policy}`):", "", *policy_lines(card),
              "", "How results are presented (`python -m cxr_core fit-presentation`, on held-out data):", "",
              *subtype_lines(card)]
    return "\n".join(lines) + "\n"


def _pct(value: Any) -> str:
    return "not measured" if value is None else f"{value:.1%}"


def subtype_lines(card: ModelCard) -> list[str]:
    """The subtype policy: stated only above a margin chosen on held-out pneumonia films."""
    sp = card.subtype_policy
    if not sp:
        return ["- Subtype: the likelier of bacterial and viral is stated for every PNEUMONIA (no margin fitted: run "
                "`python -m cxr_core fit-presentation`)."] + gradcam_lines(card)
    return [f"- Subtype: stated only when its margin |P(bacterial) - P(viral)| / (P(bacterial) + P(viral)) is at least "
            f"**{sp['margin']:.3f}**, chosen on {sp['n_pneumonia']} held-out pneumonia films for a subtype precision "
            f">= {sp['precision_target']:.2f} (achieved {sp['precision']:.3f}; all calls: {sp['precision_all']:.3f}). "
            f"It is stated for {sp['stated_fraction']:.0%} of them; below the margin the result says \"subtype "
            "uncertain\"."] + gradcam_lines(card)


def gradcam_lines(card: ModelCard) -> list[str]:
    g = card.gradcam
    if not g:
        return ["- Heatmap: each map scaled to its own peak (no fixed scale fitted: run `python -m cxr_core "
                "fit-presentation`)."]
    return [f"- Heatmap: {g['method']} at layer `{g['layer']}`, explaining {g['explains']}; drawn on a fixed scale "
            f"(1.0 = {g['scale']:.4g}, {g['fitted_on']})."]


def trained_threshold(card: ModelCard) -> float:
    """The threshold the training chose (the stress suite was scored at it): the card's, unless an external one
    replaced it."""
    if card.threshold_policy == "external_sensitivity":
        return float(((card.external_validation or {}).get("internal_threshold") or {}).get("threshold", card.threshold))
    return card.threshold


def external_section(card: ModelCard, heading: str = "##") -> list[str]:
    """The external validation's figures (validate-external), beside the internal ones; [] without one."""
    e = card.external_validation
    if not e:
        return []
    at, card_at, t = e["at_target_sensitivity"], e["at_card_threshold"], e["three_class"]
    rows = [("AUC", with_ci(e["auc"], e.get("auc_ci95")))]
    for name, point in ((f"at sensitivity >= {at['target_sensitivity']:.2f}: threshold", at),
                        (f"at the threshold the card had then (`{card_at.get('policy')}`)", card_at)):
        rows += [(f"{name} {point['threshold']:.3f}: sensitivity", with_ci(point["sensitivity"], point["sensitivity_ci95"])),
                 ("specificity", with_ci(point["specificity"], point["specificity_ci95"])),
                 ("accuracy", f"{point['accuracy']:.3f}")]
    rows += [(f"3-class accuracy at {at['threshold']:.3f}", f"{at.get('three_class_accuracy', float('nan')):.3f}"),
             (f"3-class accuracy at {card_at['threshold']:.3f}", with_ci(t["accuracy"], t.get("accuracy_ci95"))),
             ("bacterial-vs-viral AUC", f"{t['bacterial_vs_viral_auc']:.3f}")]
    if t.get("subtype_stated_fraction") is not None:
        rows.append(("subtype stated (past the margin) / its precision",
                     f"{t['subtype_stated_fraction']:.1%} / {t['subtype_precision_stated']:.3f}"))
    return [f"{heading} {card.external_label}",
            f"n = {e['n']} films ({e['class_counts']}), none in the model's training data (training_hashes.txt); "
            f"labels: {e.get('label_source') or 'the folder names'}; scored {str(e.get('evaluated'))[:10]} by "
            "`python -m cxr_core validate-external`. The threshold at the sensitivity target was chosen on these "
            f"same films (bootstrap 95 % CI of the threshold {ci(at.get('threshold_ci95'))}), so its own figures "
            "here are optimistic; the AUC is not.",
            "", "| metric | value [95 % CI] |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]


def selection_section(card: ModelCard, heading: str = "##") -> list[str]:
    """Why this model ships: the candidates' figures on an external site (bench/external_choice.py) and the choice."""
    sel = card.selection
    if not sel:
        return []
    return [f"{heading} Why this model ships (chosen on {sel['site']})",
            f"Candidates scored on {sel['site']} (`{sel['command']}`, {sel['measured'][:10]}; internal AUC shown, not "
            "used: it ranked the project's shipped models in reverse):", "",
            "| candidate | internal AUC [95 % CI] | external AUC [95 % CI] | spec @ sens >= 0.95 (threshold, sens) | "
            "3-class accuracy there |", "|---|---|---|---|---|",
            *(f"| {r['candidate']} | {r['internal']} | {r['external_auc']} | {r['spec_at_sens']} | {r['three_class']} |"
              for r in sel["rows"]),
            "", f"**Choice: {sel['chosen']}.** {sel['reason']}", ""]


def policy_lines(card: ModelCard) -> list[str]:
    """Markdown bullets: the threshold policy, what it trades, and Youden's threshold for comparison."""
    ev = card.threshold_evidence
    external, own = [], trained_threshold(card)
    if card.threshold_policy == "external_sensitivity" and card.external_validation:
        e = card.external_validation
        was = e.get("internal_threshold") or {}
        external = [f"- Threshold policy `external_sensitivity`: the highest threshold with sensitivity >= "
                    f"{e['at_target_sensitivity']['target_sensitivity']:.2f} on {e['n']} films of {e['site']}, an "
                    f"external site the model never trained on (internal validation could not rank models for the "
                    f"field). It replaced the internal policy's threshold {was.get('threshold', float('nan')):.3f} "
                    f"(`{was.get('policy')}`), described below."]
    if not ev:
        return external
    if ev.name == "sensitivity_then_specificity":
        at = ev.at_threshold
        worst_key = min((k for k in at if k != CLEAN), key=lambda k: at[k]["specificity"], default=CLEAN)
        lines = [f"- Threshold policy `{ev.name}`: sensitivity >= {ev.target_sensitivity:.2f} on clean held-out "
                 f"scores and >= {ev.shifted_sensitivity_floor:.2f} under every held-out shift up to severity "
                 f"{ev.max_severity}; within that, the highest threshold, which maximises the worst-case "
                 f"specificity. Binding condition: `{ev.binding_condition}`.",
                 f"- What it trades: {ev.trade} At {own:.3f}, on the held-out "
                 f"scores it was chosen on: clean "
                 f"sensitivity {at[CLEAN]['sensitivity']:.3f} / specificity {at[CLEAN]['specificity']:.3f}; "
                 f"worst held-out shift specificity {at[worst_key]['specificity']:.3f} (`{worst_key}`, sensitivity "
                 f"{at[worst_key]['sensitivity']:.3f})."]
    elif ev.name == "robust_sensitivity":
        lines = [f"- Threshold policy `{ev.name}`: the highest threshold that keeps sensitivity >= "
                 f"{ev.target_sensitivity:.2f} on the clean out-of-fold scores and under every shift up to severity "
                 f"{'?' if ev.max_severity is None else ev.max_severity}; binding condition: `{ev.binding_condition}`."]
    elif ev.name == "sensitivity":
        lines = [f"- Threshold policy `sensitivity`: the highest threshold that keeps sensitivity >= "
                 f"{ev.target_sensitivity:.2f} on the validation scores."]
    else:
        lines = [f"- Threshold policy `{ev.name}`: maximises sensitivity + specificity - 1 on the validation scores."]
    if ev.youden_threshold_for_comparison is not None:
        y = ev.at_youden or {}
        lines.append(f"- For comparison, Youden's threshold on the same scores would be "
                     f"{ev.youden_threshold_for_comparison:.3f} (sensitivity {y.get('sensitivity', float('nan')):.3f}, "
                     f"specificity {y.get('specificity', float('nan')):.3f}).")
    return external + lines


def guard_lines(card: ModelCard) -> list[str]:
    """Markdown table rows: each input guard's rate on held-out pediatric films, and all together."""
    rates = (card.guard_calibration or {}).get("held_out_rates")
    if not rates:
        return [f"| OOD detector false alarms on held-out training-split X-rays | {_pct(card.ood_val_false_alarm_rate)} |"]
    n = card.guard_calibration["held_out_images"]
    return [f"| held-out pediatric films (n = {n}) refused / warned unusual / warned very unusual / flagged adult | "
            f"{_pct(rates['refused'])} / {_pct(rates['unusual'])} / {_pct(rates['very_unusual'])} / "
            f"{_pct(rates['population'])} |",
            *([f"| held-out pediatric films refused by the pixel layout / by the chest-appearance autoencoder | "
               f"{_pct(rates['refused_layout'])} / {_pct(rates['refused_appearance'])} |"] if "refused_appearance" in rates
              else []),
            f"| held-out pediatric films flagged by any guard | {_pct(rates['flagged'])} |"]


def _guard_section(card: ModelCard) -> list[str]:
    calibration = card.guard_calibration
    if not calibration:
        return []
    rules = "; ".join(f"{name}: {rule}" for name, rule in calibration["rules"].items())
    appearance = card.appearance_check
    what = [] if not appearance else [
        f"Chest-appearance check: {appearance['what']} ({appearance['parameters']:,} parameters, "
        f"{appearance['recipe']['size']} px, a {appearance['recipe']['code']}-number code, "
        f"{appearance['recipe']['epochs']} epochs on the training films"
        + (f"; inherited from the parent model `{appearance['inherited_from']}`" if "inherited_from" in appearance else "")
        + ").", ""]
    return ["## Input guards", "", f"Thresholds calibrated on held-out pediatric films ({rules}). {calibration['note']}.",
            "", *what, "| guard | value |", "|---|---|", *guard_lines(card), ""]


def _stress_lines(card: ModelCard) -> list[str]:
    stress = card.stress
    if not stress:
        return []
    lines = ["## Stress suite (acquisition shifts)", "",
             f"Scores on {stress.note or 'the validation images'}, at the threshold chosen in training "
             f"({trained_threshold(card):.3f}). "
             "'in aug.' says whether training augmentation varies that property; 'no' is held out. The "
             "acquisition family (soft, glare, unsharp, tone_curve, annotation) models another X-ray unit's film. "
             "'chose threshold' marks the conditions the threshold policy was fitted on: their sensitivity and "
             "specificity at the threshold are not independent evidence (their AUC is; so are the other rows).", "",
             "| condition | family | in aug. | chose threshold | AUC | sensitivity | specificity |",
             "|---|---|---|---|---|---|---|"]
    for r in stress_rows(stress, card.threshold_evidence):
        lines.append(f"| {r.condition} | {r.family} | {r.in_augmentation} | {'yes' if r.chose_threshold else ''} | "
                     f"{r.auc:.3f} | {r.sensitivity:.3f} | {r.specificity:.3f} |")
    for label, w in stress.worst_cases():
        lines.append("")
        lines.append(f"Worst case, {label}: " + "; ".join(
            f"{m} {e.value:.3f} (`{e.condition}`)" for m, e in w.shown()) + ".")
    return lines + [""]


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
