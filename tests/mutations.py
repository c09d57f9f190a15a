"""Prove that the safety tests bite: apply each deliberate breakage to a temporary copy of the tree, run the
tests that should catch it, and report which were caught.

    python tests/mutations.py [--only NAME ...]

Exit status 1 when any breakage goes uncaught. The checkout is never modified.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
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
             (("decided = int(decide(probs[None], point.threshold)[0])",
               "decided = int(decide(probs[None], self.card.threshold)[0])"),),
             ("tests/test_cases.py::-k flips",)),
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
             ("tests/test_crash_safety.py",)),
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
             ("tests/test_crash_safety.py",)),
    Mutation("the image guards never refuse or warn", "cxr_core/safety/ood.py",
             (("        found = {k: bool(v[0]) for k, v in", "        return [], []\n        found = {k: bool(v[0]) for k, v in"),),
             ("tests/test_intended_use.py::-k tiny_model_refuses or image_guards_refuse",)),
    Mutation("guard thresholds calibrated on the training films' own scores", "cxr_core/safety/ood.py",
             (("pixel, feature = det.pixel_scores(held_out_images), det.feature_scores(held_out_features)",
               "pixel, feature = det.pixel_scores(fit_images), det.feature_scores(fit_features)"),),
             ("tests/test_intended_use.py::-k calibrates_its",)),
    Mutation("the audit table has no database triggers",
             "cxr_core/cases/migrations/versions/0003_audit_append_only_in_the_database.py",
             (("def upgrade() -> None:\n", "def upgrade() -> None:\n    return\n"),), ("tests/test_cases.py::-k raw_sql",)),
    Mutation("the SR says Present whatever the label", "cxr_core/dicom/results.py",
             (('(PRESENT if pred.label == "PNEUMONIA" else ABSENT)', "PRESENT"),), ("tests/test_cases.py::-k flips",)),
    Mutation("the SC carries no decision line", "cxr_core/dicom/results.py",
             (("captioned(overlay_rgb, (result_line(pred), *CAPTION))", "captioned(overlay_rgb, CAPTION)"),),
             ("tests/test_cases.py::-k flips",)),
    Mutation("a walked file that is not sniffed as an image is dropped silently", "cxr_core/inputs/discovery.py",
             (("    return not (path.name.startswith(\".\")", "    return False and not (path.name.startswith(\".\")"),),
             ("tests/test_intended_use.py::-k walked_by_content",)),
    Mutation("the shift-aware policy ignores the shift floor", "cxr_core/validation/metrics.py",
             (('    limits = {k: choose_threshold(yb, p, "sensitivity",',
               '    considered = {"clean": considered["clean"]}\n    limits = {k: choose_threshold(yb, p, "sensitivity",'),),
             ("tests/test_stress.py::-k shift_aware",)),
    Mutation("a shell's CXR_* variables reach the tests", "tests/conftest.py",
             (("for _name in [k for k in os.environ if _is_user_setting(k)]:", "for _name in []:"),
              ("        monkeypatch.delenv(name)", "        pass")),
             ("tests/test_isolation.py",)),
    Mutation("the chest-appearance check never refuses", "cxr_core/safety/appearance.py",
             (("        return [[REASON.format(why=WHY[k]) for k in RULES if found[k][i]][:1]",
               "        return [[] for _ in found[\"refused\"]]\n        return [[REASON.format(why=WHY[k]) for k in RULES if found[k][i]][:1]"),),
             ("tests/test_appearance.py::-k cannot_explain or refuses_noise",)),
    Mutation("chest-appearance thresholds calibrated on the training films' own scores", "cxr_core/safety/appearance.py",
             (("        held = check.scores(held_out_images)", "        held = check.scores(fit_images)"),),
             ("tests/test_appearance.py::-k thresholds_come_from_held_out",)),
)


def copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


def run_tests(tree: Path, tests: tuple[str, ...], env: dict[str, str]) -> bool:
    """True when the tests fail (the breakage is caught)."""
    for spec in tests:
        path, _, k = spec.partition("::-k ")
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:randomly", "-p", "no:cacheprovider", path]
        if k:
            cmd += ["-k", k]
        res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=1200)
        if res.returncode == 1:  # tests ran and failed
            return True
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="substrings of the breakages to run")
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or any(o in m.name for o in args.only)]
    # The sentinel that the isolation breakage must be caught with: a database URL in the shell.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CXR_DATABASE_URL": "sqlite:////nonexistent/sentinel.db"}
    uncaught = 0
    for mutation in chosen:
        with tempfile.TemporaryDirectory(prefix="cxr-mutation-") as tmp:
            tree = Path(tmp) / "tree"
            copy_tree(tree)
            if (ROOT.parent / "shared").exists():  # the real data, where tests read it (../shared)
                (tree.parent / "shared").symlink_to(ROOT.parent / "shared")
            target = tree / mutation.file
            text = target.read_text()
            if any(old not in text for old, _ in mutation.edits):
                print(f"STALE    {mutation.name}: the code it breaks has changed ({mutation.file})")
                uncaught += 1
                continue
            for old, new in mutation.edits:
                text = text.replace(old, new, 1)
            target.write_text(text)
            caught = run_tests(tree, mutation.tests, env)
            uncaught += not caught
            print(f"{'caught ' if caught else 'MISSED '}  {mutation.name}  <- {', '.join(mutation.tests)}", flush=True)
    return 1 if uncaught else 0


if __name__ == "__main__":
    raise SystemExit(main())
