"""Prove that the safety tests bite: apply each deliberate breakage to a temporary copy of the tree, run the
tests that should catch it, and report which were caught.

    python tests/mutations.py [--only NAME ...] [--jobs N]
    python tests/mutations.py --check     # seconds: every pin still matches its source, every named test exists

Each breakage's tests run as the README's quick command runs them (`-m "not slow"`, one process): a breakage that
only a slow test (real servers, killed processes) would catch counts as missed. Exit status 1 when any breakage goes
uncaught, or (`--check`) when a pin is stale. The checkout is never modified.
"""

from __future__ import annotations

import argparse
import py_compile
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    edits: tuple[tuple[str, str], ...]  # (old, new) replacements, each applied once
    tests: tuple[str, ...]  # test files, or "FILE::-k EXPR"


MUTATIONS = (
    Mutation("the decision ignores the site operating point (uses the card's threshold)", "cxr_core/model/predict.py",
             (("decided = label(p, point.threshold) if verdict.assessed else None",
               "decided = label(p, self.card.threshold) if verdict.assessed else None"),),
             ("tests/dicom/test_site_point_results.py::-k flips",)),
    Mutation("the case commits before its audit event (two transactions)", "cxr_core/cases/store.py",
             (("""                session.flush()
                session.add(AuditEvent(actor=actor, action="create", case_id=case.id, model_id=model_id,
                                       details={"label": pred.label, "assessed": pred.assessed}))
                return case.id, True""", """                session.flush()
                case_id = case.id
            with Session(self.engine) as session, session.begin():
                session.add(AuditEvent(actor=actor, action="create", case_id=case_id, model_id=model_id,
                                       details={"label": pred.label, "assessed": pred.assessed}))
                return case_id, True"""),),
             ("tests/test_quick_safety.py::-k one_transaction",)),
    Mutation("the pictures are stored after the case commits (two transactions)", "cxr_core/cases/store.py",
             (("""                for kind, data in pictures.items():  # a picture another case already holds is stored once
                    if session.get(Picture, keys[kind]) is None:
                        session.add(Picture(sha256=keys[kind], data=data))
                session.flush()
""", ""), ("                return case.id, True", """                case_id = case.id
            with Session(self.engine) as session, session.begin():
                for kind, data in pictures.items():
                    if session.get(Picture, keys[kind]) is None:
                        session.add(Picture(sha256=keys[kind], data=data))
            return case_id, True""")),
             ("tests/test_quick_safety.py::-k one_transaction",)),
    Mutation("the image guards never refuse or warn", "cxr_core/safety/ood.py",
             (("        over = float(self.layout_excess(image[None])[0])",
               "        return ChestCheck(), []\n        over = float(self.layout_excess(image[None])[0])"),),
             ("tests/safety/test_intended_use.py::-k tiny_model_refuses or image_guards_refuse",)),
    Mutation("guard thresholds calibrated on the training films' own scores", "cxr_core/safety/ood.py",
             (("pixel, feature = det.pixel_scores(held_out_images), det.feature_scores(held_out_features)",
               "pixel, feature = det.pixel_scores(fit_images), det.feature_scores(fit_features)"),),
             ("tests/safety/test_intended_use.py::-k calibrates_its",)),
    Mutation("the audit table has no database triggers",
             "cxr_core/cases/migrations/versions/0003_audit_append_only_in_the_database.py",
             (("def upgrade() -> None:\n", "def upgrade() -> None:\n    return\n"),), ("tests/cases/test_store.py::-k raw_sql",)),
    Mutation("the SR says Present whatever the label", "cxr_core/dicom/sr.py",
             (('(PRESENT if pred.label == "PNEUMONIA" else ABSENT)', "PRESENT"),), ("tests/dicom/test_site_point_results.py::-k flips",)),
    Mutation("the SC carries no decision line", "cxr_core/dicom/sc.py",
             (("(result_line(pred), *CAPTION)),", "CAPTION),"),),
             ("tests/dicom/test_site_point_results.py::-k flips",)),
    Mutation("a walked file that is not sniffed as an image is dropped silently", "cxr_core/inputs/discovery.py",
             (("    return not (path.name.startswith(\".\")", "    return False and not (path.name.startswith(\".\")"),),
             ("tests/safety/test_intended_use.py::-k walked_by_content",)),
    Mutation("the shift-aware policy ignores the shift floor", "cxr_core/validation/metrics.py",
             (('    limits = {k: choose_threshold(yb, p, "sensitivity",',
               '    considered = {"clean": considered["clean"]}\n    limits = {k: choose_threshold(yb, p, "sensitivity",'),),
             ("tests/validation/test_stress.py::-k shift_aware",)),
    Mutation("a shell's CXR_* variables reach the tests", "tests/conftest.py",
             (("for _name in [k for k in os.environ if _is_user_setting(k)]:", "for _name in []:"),
              ("        monkeypatch.delenv(name)", "        pass")),
             ("tests/test_quick_safety.py::-k no_cxr_variable",)),
    Mutation("the DICOM map ignores the model's padding, off the source's pixels", "cxr_core/dicom/pm.py",
             (("(int(source.Rows), int(source.Columns)), card.preprocess.pad)", "(int(source.Rows), int(source.Columns)))"),),
             ("tests/dicom/test_pacs.py::-k pixel_grid",)),
    Mutation("the SR states a subtype the margin left uncertain", "cxr_core/dicom/sr.py",
             (("UNDETERMINED if pred.subtype == SUBTYPE_UNCERTAIN else CAUSES[pred.subtype]",
               "CAUSES.get(pred.subtype, CAUSES['BACTERIAL'])"),),
             ("tests/dicom/test_pacs.py::-k every_decision_path",)),
    # Issue 34: the breakages an independent audit found uncaught, each now caught by tests/model/test_controlled.py (the
    # controlled model makes every decision path reachable).
    Mutation("the heatmap explains NORMAL: evidence sign flipped in numpy and TensorFlow alike", "cxr_core/model/gradcam.py",
             (("    w[rows, 0] = -1.0\n", "    w[rows, 0] = 1.0\n"),
              ("np.where(logits[:, 2] > logits[:, 1], 2, 1)] = 1.0", "np.where(logits[:, 2] > logits[:, 1], 2, 1)] = -1.0"),
              ("    return tf.one_hot(subtype, classes) - tf.one_hot(tf.zeros_like(subtype), classes)",
               "    return tf.one_hot(tf.zeros_like(subtype), classes) - tf.one_hot(subtype, classes)")),
             ("tests/model/test_controlled.py::-k evidence_weights or heatmap_peaks",)),
    Mutation("the heatmap explains NORMAL: evidence sign flipped in numpy only", "cxr_core/model/gradcam.py",
             (("    w[rows, 0] = -1.0\n", "    w[rows, 0] = 1.0\n"),
              ("np.where(logits[:, 2] > logits[:, 1], 2, 1)] = 1.0", "np.where(logits[:, 2] > logits[:, 1], 2, 1)] = -1.0")),
             ("tests/model/test_controlled.py::-k evidence_weights or heatmap_peaks",)),
    Mutation("the heatmap explains NORMAL: evidence sign flipped in TensorFlow only (LayerCAM)", "cxr_core/model/gradcam.py",
             (("    return tf.one_hot(subtype, classes) - tf.one_hot(tf.zeros_like(subtype), classes)",
               "    return tf.one_hot(tf.zeros_like(subtype), classes) - tf.one_hot(subtype, classes)"),),
             ("tests/model/test_controlled.py::-k evidence_weights or heatmap_peaks",)),
    Mutation("the population (adult / age) warning never reaches the verdict", "cxr_core/safety/intended_use.py",
             (("*([population_warning] if population_warning else [])", "*([] if population_warning else [])"),),
             ("tests/model/test_controlled.py::-k adult or validated_ages",)),
    Mutation("the population check's cross-validation splits a patient's films across folds",
             "cxr_core/safety/population.py",
             (("split(x, y, np.asarray(groups))", "split(x, y, np.arange(len(y)))"),),
             ("tests/safety/test_population.py::-k out_of_fold",)),
    Mutation("the listener logs the PatientID of a refused instance", "cxr_core/dicom/listener.py",
             (('                        ds.get("SOPInstanceUID", "?"), modality, ", ".join(PROJECTION_MODALITIES))',
               '                        ds.get("PatientID", "?"), modality, ", ".join(PROJECTION_MODALITIES))'),),
             ("tests/model/test_controlled.py::-k logs_no_patient",)),
    Mutation("the subtype margin is ignored: a close call states a subtype", "cxr_core/model/predict.py",
             (("stated_subtype(probs, self.card.subtype_margin)", "stated_subtype(probs, None)"),),
             ("tests/model/test_controlled.py::-k close_subtype",)),
    Mutation("an unwindowed MONOCHROME1 film is read as a negative", "cxr_core/inputs/imaging.py",
             (('        if photometric == "MONOCHROME1":', '        if photometric == "MONOCHROME1" and has_window:'),),
             ("tests/model/test_controlled.py::-k monochrome1",)),
    Mutation("serving skips the intensity policy that training applied", "cxr_core/model/predict.py",
             (("        self.preprocess = self.card.preprocess\n",
               "        self.preprocess = type(self.card.preprocess)(self.card.preprocess.size, self.card.preprocess.pad, 'none')\n"),),
             ("tests/model/test_controlled.py::-k served_model_input",)),
    Mutation("BACTERIAL and VIRAL probabilities swapped in what a prediction reports", "cxr_core/model/predict.py",
             (("for c, v in zip(CLASSES, probs)}", "for c, v in zip(CLASSES, probs[[0, 2, 1]])}"),),
             ("tests/model/test_controlled.py::-k reported_answer",)),
    Mutation("the listener decides at the model's threshold, ignoring the site point", "cxr_core/dicom/listener.py",
             (("Request.resolve(self.store, str(self.predictor.folder.path),",
               "Request.resolve(None, str(self.predictor.folder.path),"),),
             ("tests/model/test_controlled.py::-k listener_decides",)),
    Mutation("the site point's minimum is checked on the total, not per class", "cxr_core/validation/site_point.py",
             (("    if n_positive < policy.min_per_class or n_negative < policy.min_per_class:",
               "    if n_positive + n_negative < policy.min_per_class:"),),
             ("tests/model/test_controlled.py::-k minimum_is_per_class",)),
    Mutation("an unassessed case gets no create audit event", "cxr_core/cases/store.py",
             (('                session.add(AuditEvent(actor=actor, action="create", case_id=case.id, model_id=model_id,',
               '                if pred.assessed: session.add(AuditEvent(actor=actor, action="create", case_id=case.id, model_id=model_id,'),),
             ("tests/model/test_controlled.py::-k one_create_event",)),
    Mutation("result UIDs no longer depend on the model", "cxr_core/dicom/source.py",
             (("entropy_srcs=[str(source_sop_uid), str(model_id), what]", "entropy_srcs=[str(source_sop_uid), what]"),),
             ("tests/model/test_controlled.py::-k result_uids",)),
    Mutation("the chest-appearance check never refuses", "cxr_core/safety/appearance.py",
             (("        over = furthest(scores, self.thresholds)",
               "        return [ChestCheck() for _ in images]\n        over = furthest(scores, self.thresholds)"),),
             ("tests/safety/test_appearance.py::-k cannot_explain or refuses_noise",)),
    Mutation("chest-appearance thresholds calibrated on the training films' own scores", "cxr_core/fitting/appearance.py",
             (("    held = check.scores(held_out_images)", "    held = check.scores(fit_images)"),),
             ("tests/safety/test_appearance.py::-k thresholds_come_from_held_out",)),
    # Site adaptation (the independent audit's breakages, issue 44): each caught by a quick test.
    Mutation("site adaptation's per-class minimum checked with or", "cxr_core/site/films.py",
             (("if normal >= min_per_class and pneumonia >= min_per_class:",
               "if normal >= min_per_class or pneumonia >= min_per_class:"),),
             ("tests/site/test_site_adaptation.py::-k each_class_needs_the_minimum",)),
    Mutation("a site whose sensitivity bound cannot reach the floor is trained anyway", "cxr_core/site/films.py",
             (("    if pneumonia < needed:\n", "    if False:\n"),),
             ("tests/site/test_site_adaptation.py::-k never_reach_the_floor",)),
    Mutation("the adapted model's training hashes leave out the parent's films", "train/site.py",
             (("known = sorted((training_hashes(parent.folder.hashes_file) or set()) | set(screened.hashes))",
               "known = sorted(set(screened.hashes))"),),
             ("tests/site/test_site_adaptation.py::-k knows_its_parents",)),
    Mutation("a fold's model is tuned on the fold it scores too", "train/site.py",
             (("        tune = np.setdiff1d(np.arange(len(yb)), held)\n", "        tune = np.arange(len(yb))\n"),),
             ("tests/site/test_site_adaptation.py::-k cross_fitting_never",)),
    Mutation("fine-tuning batches drawn from every film, not only the tuning films", "train/site.py",
             (("orders = [tune[rng.permutation(len(tune))] for _ in range(epochs)]",
               "orders = [rng.permutation(len(x)) for _ in range(epochs)]"),),
             ("tests/site/test_site_adaptation.py::-k draws_its_batches",)),
    Mutation("the bootstrap AUC off by one", "cxr_core/site/evidence.py",
             (("- pos * (pos + 1) / 2) / (pos * neg)", "- pos * pos / 2) / (pos * neg)"),),
             ("tests/site/test_site_evidence.py::-k each_bootstrap_auc",)),
    Mutation("the gate ignores the paired difference's lower bound", "cxr_core/site/activation.py",
             (("if not (point >= 0.0 and low >= -NON_INFERIORITY_MARGIN):", "if not point >= 0.0:"),),
             ("tests/site/test_site_models.py::-k site_adapted_gate",)),
    Mutation("the gate ignores the candidate's sensitivity floor", "cxr_core/site/activation.py",
             (("    if not low >= policy.sensitivity_floor:\n", "    if False:\n"),),
             ("tests/site/test_site_models.py::-k site_adapted_gate",)),
    Mutation("the gate ignores a card marked as failed", "cxr_core/site/activation.py",
             (("    if not card.passed_gate:\n", "    if False:\n"),),
             ("tests/site/test_site_models.py::-k marked_failed",)),
    Mutation("a reduced-budget run may become the site's model", "cxr_core/site/activation.py",
             (("    if card.reduced_budget:\n", "    if False:\n"),),
             ("tests/site/test_site_models.py::-k reduced_budget",)),
    Mutation("activation without evidence on the site's films", "cxr_core/site/activation.py",
             (("    if evidence is None:\n        reasons.append", "    if False:\n        reasons.append"),),
             ("tests/site/test_site_models.py::-k without_site_evidence",)),
    Mutation("local evidence may include a model's own training films", "cxr_core/site/activation.py",
             (('if result.summary["overlap"]["same_folder"] or seen:', 'if result.summary["overlap"]["same_folder"]:'),),
             ("tests/site/test_activation.py::-k not_evidence",)),
    Mutation("the comparison pairs the candidate with itself", "cxr_core/site/activation.py",
             (("ev = compare(yb, pneumonia_probability(other_probs), other_point.threshold,",
               "ev = compare(yb, pneumonia_probability(probs), other_point.threshold,"),),
             ("tests/site/test_activation.py::-k worse_model",)),
    Mutation("the external validation accepts films the model trained on", "cxr_core/validation/external.py",
             (('    if overlap["images_in_training"]:\n', '    if False:\n'),),
             ("tests/validation/test_external.py::-k refused_where",)),
    Mutation("a non-chief worker gets a checkpoint manager in the shared run folder", "cxr_core/fitting/distribute.py",
             (("if dist.is_chief else None)", "if True else None)"),),
             ("tests/train/test_distributed.py::-k non_chief",)),
    Mutation("restore returns one epoch too many", "cxr_core/fitting/distribute.py",
             (("        return int(self.epoch.numpy())", "        return int(self.epoch.numpy()) + 1"),),
             ("tests/train/test_distributed.py::-k restore_returns",)),
    Mutation("a request ignores the site's governed choice of model", "cxr_core/site/models.py",
             (("        choice = active_choice(store)\n        if choice is None or choice.model_id is None:",
               "        choice = None\n        if choice is None or choice.model_id is None:"),),
             ("tests/site/test_activation.py::-k governed_choice_else",)),
    Mutation("a resumed fine-tuning trains its finished epochs again", "train/site.py",
             (("    done = checkpoints.restore() if checkpoints is not None else 0\n", "    done = 0\n"),),
             ("tests/site/test_site_adaptation.py::-k resumes_after",)),
    Mutation("the SR's device observer UID is built from the model's name", "cxr_core/dicom/sr.py",
             (("uid=device_uid(card.model_id)", "uid=device_uid(card.name)"),),
             ("tests/dicom/test_pacs.py::-k tid1500",)),
    Mutation("an adult chest film is refused as a foreign input", "cxr_core/safety/intended_use.py",
             (("    if (outside_population and layout is not None", "    if (False and layout is not None"),),
             ("tests/model/test_controlled.py::-k population_warning_not", "tests/fitting/test_guards.py::-k product")),
    Mutation("an adult-looking film is assessed although both chest checks clearly refuse it",
             "cxr_core/safety/intended_use.py",
             (("and joint_excess(layout, appearance) < ADULT_FOREIGN_MARGIN):", "and True):"),),
             ("tests/model/test_controlled.py::-k population_warning_not", "tests/fitting/test_guards.py::-k product")),
    Mutation("an adult-looking film is refused when both chest checks refuse it only a little",
             "cxr_core/safety/intended_use.py",
             (("    return layout.excess * appearance.excess if", "    return float('inf') if"),),
             ("tests/model/test_controlled.py::-k population_warning_not", "tests/fitting/test_guards.py::-k product")),
    Mutation("an adult-looking film is refused when one chest check alone is far out", "cxr_core/safety/intended_use.py",
             (("if layout.reasons and appearance.reasons else 0.0", "if layout.reasons or appearance.reasons else 0.0"),),
             ("tests/model/test_controlled.py::-k population_warning_not",)),
    Mutation("an adult-looking film exactly at the joint margin is assessed", "cxr_core/safety/intended_use.py",
             (("joint_excess(layout, appearance) < ADULT_FOREIGN_MARGIN):", "joint_excess(layout, appearance) <= ADULT_FOREIGN_MARGIN):"),),
             ("tests/model/test_controlled.py::-k population_warning_not",)),
    Mutation("a model with one chest check waives it for adults", "cxr_core/safety/intended_use.py",
             (("    if (outside_population and layout is not None and appearance is not None\n"
               "            and joint_excess(layout, appearance) < ADULT_FOREIGN_MARGIN):",
               "    if outside_population and (layout is None or appearance is None\n"
               "            or joint_excess(layout, appearance) < ADULT_FOREIGN_MARGIN):"),),
             ("tests/model/test_controlled.py::-k population_warning_not", "tests/fitting/test_guards.py::-k product")),
    Mutation("the chest-appearance excess is its first signal's, not its furthest", "cxr_core/safety/appearance.py",
             (("    return np.fmax.reduce([excess(scores[k], thresholds[k]) for k in RULES])",
               "    return excess(scores[next(iter(RULES))], thresholds[next(iter(RULES))])"),),
             ("tests/safety/test_appearance.py::-k cannot_explain",)),
    Mutation("a NaN signal hides the chest-appearance check's other signals", "cxr_core/safety/appearance.py",
             (("    return np.fmax.reduce(", "    return np.maximum.reduce("),),
             ("tests/safety/test_appearance.py::-k nan_signal",)),
    Mutation("the layout check's excess is not its score over its threshold", "cxr_core/safety/ood.py",
             (("        return excess(self.pixel_scores(images), self.pixel_threshold)",
               "        return np.sqrt(excess(self.pixel_scores(images), self.pixel_threshold))"),),
             ("tests/safety/test_ood.py::-k laid_out",)),
    Mutation("a seeded ensemble's first member is not the recipe's single run", "train/ensemble.py",
             (('        name = config.name if seed == config.train.seed else f"{config.name}-seed{seed}"',
               '        name = f"{config.name}-seed{seed}"'),),
             ("tests/train/test_config.py::-k seeded",)),
    Mutation("the detail signal reads the whole film's mean again", "cxr_core/safety/appearance.py",
             (("        out.append(float(np.percentile(blocks, DETAIL_QUANTILE)))",
               "        out.append(float(blocks.mean()))"),),
             ("tests/safety/test_appearance.py::-k label_does_not",)),
    Mutation("a record keeps the reader's name unstripped", "cxr_core/readers.py",
             (('    return (name or "").strip() or UNSIGNED', '    return name or UNSIGNED'),),
             ("tests/test_readers.py",)),
    Mutation("revert goes to the previously active model instead of the parent", "cxr_core/site/activation.py",
             (('target = entry.card.parent_model_id or choice.details.get("previous_model_id")',
               'target = choice.details.get("previous_model_id")'),),
             ("tests/site/test_site_models.py::-k returns_to_its_parent",)),
    Mutation("unpack accepts a member that climbs out of its folder", "cxr_core/site/models.py",
             (('if name.startswith("/") or ".." in Path(name).parts:', 'if name.startswith("/"):'),),
             ("tests/site/test_site_models.py::-k outside_its_folder",)),
    Mutation("a stored model's archive is not checked against its hash", "cxr_core/site/models.py",
             (("if hashlib.sha256(data).hexdigest() != key:", "if not data:"),),
             ("tests/site/test_site_models.py::-k swapped_in",)),
    Mutation("storing a model writes no audit row", "cxr_core/site/models.py",
             (('        session.add(AuditEvent(actor=stored_by, action="model-store", case_id=None,',
               '        session.add(AuditEvent(actor=stored_by, action="model-kept", case_id=None,'),),
             ("tests/site/test_site_models.py::-k is_audited",)),
)


def copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


QUICK = ["-m", "not slow"]  # the README's quick command


def pytest_command(spec: str) -> list[str]:
    path, _, k = spec.partition("::-k ")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:randomly", "-p", "no:cacheprovider",
           *QUICK, path]
    return cmd + (["-k", k] if k else [])


def run_tests(tree: Path, tests: tuple[str, ...], env: dict[str, str]) -> bool:
    """True when the tests fail (the breakage is caught)."""
    for spec in tests:
        res = subprocess.run(pytest_command(spec), cwd=tree, env=env, capture_output=True, text=True, timeout=1200)
        if res.returncode == 1:  # tests ran and failed
            return True
    return False


def apply(mutation: Mutation, root: Path) -> str | None:
    """Apply `mutation` to the tree at `root`; the reason it cannot be (a stale pin), or None."""
    target = root / mutation.file
    if not target.is_file():
        return f"{mutation.file} does not exist"
    text = target.read_text()
    for old, new in mutation.edits:
        if old not in text:
            return f"the code it breaks has changed ({mutation.file}: {old.strip().splitlines()[0][:70]!r} not found)"
        text = text.replace(old, new, 1)
    target.write_text(text)
    return None


def run_one(mutation: Mutation, env: dict[str, str]) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="cxr-mutation-") as tmp:
        tree = Path(tmp) / "tree"
        copy_tree(tree)
        if (ROOT.parent / "shared").exists():  # the real data, where tests read it (../shared)
            (tree.parent / "shared").symlink_to(ROOT.parent / "shared")
        stale = apply(mutation, tree)
        if stale:
            return False, f"STALE    {mutation.name}: {stale}"
        caught = run_tests(tree, mutation.tests, env)
        return caught, f"{'caught ' if caught else 'MISSED '}  {mutation.name}  <- {', '.join(mutation.tests)}"


def check(mutations: list[Mutation]) -> int:
    """Without running a test: each pin is found in the checkout's source, the broken file still compiles (a
    breakage must be a behaviour, not a syntax error), and each named test file selects at least one quick test."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="cxr-mutation-check-") as tmp:
        for i, m in enumerate(mutations):
            target = Path(tmp) / str(i) / m.file
            target.parent.mkdir(parents=True)
            if (ROOT / m.file).is_file():
                shutil.copy2(ROOT / m.file, target)
            stale = apply(m, Path(tmp) / str(i))
            if stale:
                problems.append(f"STALE    {m.name}: {stale}")
                continue
            if target.suffix == ".py":
                try:
                    py_compile.compile(str(target), doraise=True)
                except py_compile.PyCompileError as exc:
                    problems.append(f"BROKEN   {m.name}: the mutated {m.file} does not compile ({exc.msg.strip()[:120]})")
    specs = sorted({spec for m in mutations for spec in m.tests})
    files = sorted({spec.partition("::-k ")[0] for spec in specs})
    missing = [f for f in files if not (ROOT / f).is_file()]
    problems += [f"NO TESTS {f} does not exist" for f in missing]
    res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-p", "no:randomly",
                          "-p", "no:cacheprovider", *QUICK, *[f for f in files if f not in missing]],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    ids = [line for line in res.stdout.splitlines() if "::" in line]
    for spec in specs:
        path, _, k = spec.partition("::-k ")
        chosen = [i for i in ids if i.startswith(path + "::") and (not k or _selects(k, i))]
        if path not in missing and not chosen:
            problems.append(f"NO TESTS {spec}: selects no quick test")
    for line in problems:
        print(line)
    print(f"{len(mutations)} breakages, {len(specs)} test selections checked: "
          f"{'all current' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _selects(expression: str, node_id: str) -> bool:
    """pytest's -k on a node id (its names, case-insensitive substrings), as `pytest -k` selects."""
    from _pytest.mark.expression import Expression

    name = node_id.lower()
    return Expression.compile(expression).evaluate(lambda word, **_: word.lower() in name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="substrings of the breakages to run")
    ap.add_argument("--check", action="store_true", help="only check that every pin and test selection is current")
    ap.add_argument("--jobs", type=int, default=1, help="breakages tested at once (each runs its tests in one process)")
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or any(o in m.name for o in args.only)]
    if args.check:
        return check(chosen)
    # The sentinel that the isolation breakage must be caught with: a database URL in the shell.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CXR_DATABASE_URL": "sqlite:////nonexistent/sentinel.db"}
    uncaught = 0
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for caught, line in pool.map(lambda m: run_one(m, env), chosen):
            uncaught += not caught
            print(line, flush=True)
    print(f"{len(chosen) - uncaught} of {len(chosen)} breakages caught by the quick tests")
    return 1 if uncaught else 0


if __name__ == "__main__":
    raise SystemExit(main())
