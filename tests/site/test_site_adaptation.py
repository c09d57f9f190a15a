"""Site adaptation (cxr_core.site, train/site.py): the refusals, the split, determinism, the card's manifest, and
the gate, on the tiny model and small synthetic sites. The governed activation is in test_site_models.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cli_env, run_cli
from testkit.synthetic import write_kaggle_folder

SMALL = {"epochs": 2, "batch_size": 8, "folds": 3}


def _site(tmp_path: Path, per_class: int = 12, seed: int = 7) -> Path:
    """A site's labelled folder of films the tiny model never saw (another seed than its training data)."""
    return write_kaggle_folder(tmp_path / f"site-{seed}", per_class=per_class, size=64, seed=seed)


# The site's sensitivity floor for the adaptations here: at the default 0.90, 35 of a site's 36 pneumonia films must
# pass the tiny parent's guards, which are trained afresh on each machine. The floor's own rule is tested below.
FLOOR = {"CXR_SITE_SENSITIVITY_FLOOR": "0.80"}


def _adapt(parent: Path, films: list, seed: int = 0, **kw):
    from train.site import Recipe, adapt

    with pytest.MonkeyPatch.context() as mp:
        for key, value in FLOOR.items():
            mp.setenv(key, value)
        return adapt(parent, films, "Dr Site", "folder", seed=seed, recipe=Recipe(**SMALL), min_per_class=8, **kw)


# ---------------------------------------------------------------------------------------------- refusals (exit 2)
def test_too_few_films_are_refused_naming_the_rule(tmp_path, tiny_model_dir):
    site = _site(tmp_path, per_class=6)
    r = run_cli(["site-model", "adapt", str(site), "--reader", "Dr A", "--model", str(tiny_model_dir)],
                env=cli_env(CXR_HOME=str(tmp_path / "home")))
    assert r.returncode == 2
    assert "at least 50 films of each class" in r.stderr and "6 normal and" in r.stderr and "remain of 18" in r.stderr


def test_the_parents_training_films_are_refused(tmp_path, tiny_model_dir, tiny_data):
    r = run_cli(["site-model", "adapt", str(tiny_data), "--reader", "Dr A", "--model", str(tiny_model_dir)],
                env=cli_env(CXR_HOME=str(tmp_path / "home"), CXR_SITE_MIN_PER_CLASS="8"))
    assert r.returncode == 2
    assert "in the parent model's training data" in r.stderr
    assert "48 of the 48 films" in r.stderr


def test_a_set_outside_the_intended_use_is_refused(tmp_path, tiny_model_dir):
    import cv2

    site = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for folder in ("NORMAL", "PNEUMONIA"):
        (site / folder).mkdir(parents=True)
        for i in range(10):
            colour = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)  # a colour picture is not a radiograph
            cv2.imwrite(str(site / folder / f"photo{i}.png"), colour)
    r = run_cli(["site-model", "adapt", str(site), "--reader", "Dr A", "--model", str(tiny_model_dir)],
                env=cli_env(CXR_HOME=str(tmp_path / "home"), CXR_SITE_MIN_PER_CLASS="8"))
    assert r.returncode == 2
    assert "none of the 20 films can be used: 20 are outside the intended use" in r.stderr


def test_a_reader_and_one_source_are_required(tmp_path, tiny_model_dir):
    env = cli_env(CXR_HOME=str(tmp_path / "home"))
    assert run_cli(["site-model", "adapt", "--reader", "Dr A", "--model", str(tiny_model_dir)], env=env).returncode == 2
    r = run_cli(["site-model", "adapt", str(tmp_path), "--reader", " ", "--model", str(tiny_model_dir)], env=env)
    assert r.returncode == 2 and "--reader NAME" in r.stderr


# ---------------------------------------------------------------------------------------------- split and screening
def _screened(films: list, x: np.ndarray | None = None):
    from cxr_core.site.films import ScreenedFilms

    n = len(films)
    return ScreenedFilms(films, np.zeros((n, 4, 4, 1)) if x is None else x, np.zeros((n, 3)), ["h"] * n, {})


def test_each_patient_is_in_one_fold_and_every_fold_holds_both_classes():
    from cxr_core.site.films import SiteFilm, folds

    rng = np.random.default_rng(0)
    films = []
    for patient in range(60):  # 1 to 4 films per patient, both classes, three strata
        label3 = patient % 3
        for _ in range(int(rng.integers(1, 5))):
            films.append(SiteFilm(b"x", int(label3 > 0), label3, f"p{patient}", True))
    parts = folds(_screened(films), 5, seed=3)
    assert len(parts) == 5 and sorted(np.concatenate(parts).tolist()) == list(range(len(films)))
    groups = [{films[i].group for i in held} for held in parts]
    assert all(a.isdisjoint(b) for i, a in enumerate(groups) for b in groups[i + 1:])
    assert all({films[i].binary for i in held} == {0, 1} for held in parts)


def test_a_fold_of_one_class_is_refused():
    from cxr_core.errors import CXRError
    from cxr_core.site.films import SiteFilm, folds

    films = [SiteFilm(b"x", 1, 1, f"p{i}", True) for i in range(10)] + [SiteFilm(b"x", 0, 0, "one", True)] * 3
    with pytest.raises(CXRError, match="holds one class only"):
        folds(_screened(films), 3, seed=0)


@pytest.mark.parametrize("normal, pneumonia, refused", [(8, 7, True), (7, 8, True), (8, 8, False)])
def test_each_class_needs_the_minimum(normal, pneumonia, refused):
    """Both classes at least at the minimum: one class there is not enough, whichever it is."""
    from cxr_core.errors import CXRError
    from cxr_core.site.films import SiteFilm, _refuse_unless_enough

    kept = [SiteFilm(b"x", 0, 0, "n", True)] * normal + [SiteFilm(b"x", 1, 1, "p", True)] * pneumonia
    counts = {"given": len(kept), "unreadable": 0, "outside the intended use": 0,
              "in the parent's training data": 0, "duplicates": 0, "kept": len(kept)}
    if refused:
        with pytest.raises(CXRError, match=f"{normal} normal and {pneumonia} pneumonia remain"):
            _refuse_unless_enough(counts, kept, 8)
    else:
        _refuse_unless_enough(counts, kept, 8)


def test_a_site_whose_sensitivity_bound_can_never_reach_the_floor_is_refused_before_training(tmp_path,
                                                                                         tiny_predictor):
    from cxr_core.errors import CXRError
    from cxr_core.site.films import films_from_folder, screen

    films = films_from_folder(_site(tmp_path, per_class=10))  # 20 pneumonia films: 35 are needed for 0.90
    with pytest.raises(CXRError, match="at least 35 pneumonia films are needed"):
        screen(films, tiny_predictor, min_per_class=8, sensitivity_floor=0.90)
    assert screen(films, tiny_predictor, min_per_class=8, sensitivity_floor=0.80).counts["kept"] > 16


def test_cross_fitting_never_tunes_on_the_fold_it_scores(monkeypatch):
    """Each fold's model is tuned on the other folds' films only, and scores exactly its own fold; the logits kept
    for a film are its own fold model's (a stand-in fine-tuning answers with the fold's number)."""
    import train.site as site_module
    from cxr_core.site.films import SiteFilm
    from train.site import Recipe, cross_fit

    films = [SiteFilm(b"x", int(i % 3 > 0), i % 3, f"p{i // 2}", True) for i in range(40)]
    screened = _screened(films)
    parts = [np.arange(k, 40, 4) for k in range(4)]
    calls = []

    def fake_fine_tune(parent, screened, tune, recipe, seed, epochs, watch, on_epoch, checkpoint_dir=None):
        k = len(calls)
        calls.append((set(tune.tolist()), set(watch.tolist())))
        for e in range(1, epochs + 1):
            on_epoch({"epoch": e, "epochs": epochs, "stage": "whole network", "loss": 0.1, "learning_rate": 1e-4,
                      "seconds": 0.0, "logits": np.full((len(watch), 3), float(k * 10 + e))})
        return None, []

    monkeypatch.setattr(site_module, "fine_tune", fake_fine_tune)
    fit = cross_fit(None, screened, parts, Recipe(epochs=2, folds=4), seed=0)
    for (tune, watch), held in zip(calls, parts):
        assert watch == set(held.tolist()) and tune == set(range(40)) - watch
    for k, held in enumerate(parts):
        assert (fit.logits[1, held] == k * 10 + 2).all() and (fit.logits[0, held] == k * 10 + 1).all()
    assert [(r["fold"], r["epoch"]) for r in fit.history] == [(k, e) for k in range(1, 5) for e in (1, 2)]


def test_fine_tuning_draws_its_batches_from_its_own_films_only(tmp_path, tiny_predictor):
    """The held-out fold's films are poisoned (NaN pixels): one of them in a batch would make the loss and the
    weights NaN."""
    from cxr_core.site.films import films_from_folder, screen
    from train.site import Recipe, fine_tune

    screened = screen(films_from_folder(_site(tmp_path, per_class=6)), tiny_predictor, min_per_class=4)
    held = np.arange(0, len(screened.films), 3)
    x = screened.x.copy()
    x[held] = np.nan
    screened.x = x
    tune = np.setdiff1d(np.arange(len(x)), held)
    seen = []
    model, rows = fine_tune(tiny_predictor, screened, tune, Recipe(epochs=2, batch_size=4), 0, 2, None, seen.append)
    assert [r["epoch"] for r in rows] == [1, 2] and len(seen) == 2
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_a_stopped_fine_tuning_resumes_after_its_last_checkpoint(tmp_path, tiny_predictor, monkeypatch):
    """Stopped after epoch 1 of 3 (the listener raises): the rerun restores that checkpoint, replays epoch 1's row
    (with the watched films' logits) and trains epochs 2 and 3 only."""
    from cxr_core.fitting.distribute import TrainingLoop
    from cxr_core.site.films import films_from_folder, screen
    from train.site import Recipe, fine_tune

    screened = screen(films_from_folder(_site(tmp_path, per_class=6)), tiny_predictor, min_per_class=4)
    watch, tune = np.arange(0, len(screened.films), 3), np.arange(len(screened.films))
    recipe, folder, first = Recipe(epochs=3, batch_size=4), tmp_path / "checkpoints", []

    def stop_after_one(row):
        first.append(row)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fine_tune(tiny_predictor, screened, tune, recipe, 0, 3, watch, stop_after_one, folder)
    again, steps = [], []
    real_step = TrainingLoop.step
    monkeypatch.setattr(TrainingLoop, "step", lambda loop, *a, **k: steps.append(1) or real_step(loop, *a, **k))
    _, rows = fine_tune(tiny_predictor, screened, tune, recipe, 0, 3, watch, again.append, folder)
    assert len(steps) == 2 * -(-len(tune) // recipe.batch_size)  # epochs 2 and 3 trained, epoch 1 not again
    assert [r["epoch"] for r in again] == [1, 2, 3] and [r["epoch"] for r in rows] == [1, 2, 3]
    assert again[0]["loss"] == first[0]["loss"] and np.array_equal(again[0]["logits"], first[0]["logits"])
    assert all(r["logits"].shape == (len(watch), 3) for r in again)


def test_a_work_folder_reused_for_other_films_resumes_nothing_of_theirs(tmp_path, tiny_model_dir):
    """Checkpoints left by another adaptation (other films, parent, seed or recipe) are dropped before anything
    trains; the same adaptation's are kept for its resume (both runs here stop at the per-class minimum)."""
    from cxr_core.errors import CXRError
    from cxr_core.site.films import films_from_folder
    from train.run_folder import RunFolder

    films, work = films_from_folder(_site(tmp_path, per_class=3)), tmp_path / "work"
    (work / "checkpoints" / "fold-1").mkdir(parents=True)
    RunFolder(work).write_status(state="failed", adaptation="another adaptation")
    with pytest.raises(CXRError, match="each class"):
        _adapt(tiny_model_dir, films, work_dir=work)
    assert not (work / "checkpoints").exists()
    (work / "checkpoints" / "fold-1").mkdir(parents=True)  # as this adaptation would have left them
    with pytest.raises(CXRError, match="each class"):
        _adapt(tiny_model_dir, films, work_dir=work)
    assert (work / "checkpoints" / "fold-1").is_dir()


def test_duplicates_count_once_and_patients_come_from_file_names(tmp_path, tiny_predictor):
    from cxr_core.site.films import films_from_folder, screen

    site = _site(tmp_path, per_class=10)
    first = sorted((site / "NORMAL").iterdir())[0]
    (site / "NORMAL" / "copy-of-first.png").write_bytes(first.read_bytes())  # the same film again
    films = films_from_folder(site)
    screened = screen(films, tiny_predictor, min_per_class=8)
    assert screened.counts["duplicates"] == 1
    assert screened.counts["kept"] == screened.counts["given"] - 1 - screened.counts["outside the intended use"]
    named = [f for f in films if f.grouped]
    assert len({f.group for f in named}) < len(named)  # Kaggle names group a patient's films
    assert all(f.group.startswith(("name-", "film-")) for f in films)


def test_dicom_patients_are_grouped_by_a_hash_never_the_id(tmp_path):
    from cxr_core.site.films import films_from_folder

    from testkit.inputs import dicom

    site = tmp_path / "dicom"
    for folder in ("NORMAL", "PNEUMONIA"):
        (site / folder).mkdir(parents=True)
    (site / "NORMAL" / "a.dcm").write_bytes(dicom())  # both carry PatientID ID-12345
    (site / "PNEUMONIA" / "b.dcm").write_bytes(dicom(photometric="MONOCHROME1"))
    films = films_from_folder(site)
    assert films[0].group == films[1].group and films[0].grouped
    assert "12345" not in films[0].group and films[0].group.startswith("dicom-")


# ---------------------------------------------------------------------------------------------- the adaptation
def _with_identified_dicom(site: Path, n: int = 3) -> Path:
    """`n` of the site's NORMAL films replaced by DICOM copies carrying a patient's name (as a PACS sends them)."""
    from cxr_core.inputs.imaging import load_image

    from testkit.inputs import dicom

    for i, path in enumerate(sorted((site / "NORMAL").iterdir())[:n]):
        pixels = (load_image(path).pixels * 4095).astype(np.uint16)
        (site / "NORMAL" / f"Secret^Name{i}.dcm").write_bytes(dicom(array=pixels, patient=f"Secret^Name{i}"))
        path.unlink()
    return site


@pytest.fixture(scope="module")
def site_films(tmp_path_factory) -> tuple[Path, list]:
    """A site's films (three of them identified DICOM) and a folder for its adaptations."""
    from cxr_core.site.films import films_from_folder

    base = tmp_path_factory.mktemp("adapt")
    return base, films_from_folder(_with_identified_dicom(_site(base, per_class=18)))


@pytest.fixture(scope="module")
def adapted(site_films, tiny_model_dir):
    """The site adapted once with seed 5 (no case database: the card is read from the work folder). Shared
    read-only by the tests of the adaptation."""
    base, films = site_films
    return _adapt(tiny_model_dir, films, seed=5, work_dir=base / "one")


@pytest.mark.slow  # a second adaptation: it trains a model again
def test_an_adaptation_is_deterministic_for_its_seed(adapted, site_films, tiny_model_dir):
    from cxr_core.model.keras_import import load_keras_model

    base, films = site_films
    first, second = adapted, _adapt(tiny_model_dir, films, seed=5, work_dir=base / "two")
    assert first["model_id"] == second["model_id"]
    assert first["local_validation"]["adapted"]["auc"] == second["local_validation"]["adapted"]["auc"]
    a = load_keras_model(Path(first["model_dir"]) / "model.keras").get_weights()
    b = load_keras_model(Path(second["model_dir"]) / "model.keras").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_the_adapted_model_is_a_model_with_its_parent_and_evidence(adapted, tiny_model_dir):
    from cxr_core.model.folder import ModelFolder
    from cxr_core.model.predict import Predictor

    result = adapted
    assert result["stored"] is False
    card = ModelFolder(result["model_dir"]).card()
    parent = ModelFolder(tiny_model_dir).card()
    assert card.model_id.startswith(f"{parent.model_id}-site-") and card.parent_model_id == parent.model_id
    site = card.site_adaptation
    counts = site["counts"]
    assert site["reader"] == "Dr Site" and counts["given"] == 18 * 3
    assert counts["kept"] == counts["given"] - counts["outside the intended use"] > 40
    lv = site["local_validation"]
    for name in ("parent", "adapted"):
        for key in ("auc", "auc_ci95", "sensitivity", "sensitivity_ci95", "specificity", "specificity_ci95",
                    "threshold", "roc"):
            assert key in lv[name]
    assert lv["kind"] == "out-of-fold" and lv["n"] == counts["kept"]  # every kept film is evidence
    assert lv["difference"]["auc"] == pytest.approx(lv["adapted"]["auc"] - lv["parent"]["auc"])
    assert lv["parent"]["threshold"] == pytest.approx(parent.threshold)  # the parent judged at its own threshold
    assert card.threshold == pytest.approx(lv["adapted"]["threshold"])
    assert 1 <= site["epoch"] == card.epochs_run <= SMALL["epochs"]
    assert len(site["out_of_fold_auc_by_epoch"]) == SMALL["epochs"]
    assert len(site["threshold_cross_check"]["fold_thresholds"]) == SMALL["folds"] == len(counts["folds"])
    assert sum(f["n"] for f in counts["folds"]) == lv["n"]
    assert {r["fold"] for r in site["history"]} == {1, 2, 3}
    assert card.guard_calibration["held_out_images"] == counts["folds"][0]["n"]  # calibrated on the first fold
    # the chest-appearance check is the parent's, copied and recorded as such (not refitted on a few site films)
    own, theirs = ModelFolder(result["model_dir"]), ModelFolder(tiny_model_dir)
    assert own.appearance_model_file.read_bytes() == theirs.appearance_model_file.read_bytes()
    assert own.appearance_file.read_bytes() == theirs.appearance_file.read_bytes()
    assert card.appearance_check == {**parent.appearance_check, "inherited_from": parent.model_id}
    assert f"inherited from the parent model `{parent.model_id}`" in (own.path / own.CARD_MARKDOWN).read_text()
    pred = Predictor(result["model_dir"]).predict(next(Path(result["model_dir"]).parents[1].rglob("*.jpeg")))
    assert pred.model_id == card.model_id  # it answers as itself


def test_the_adapted_model_knows_its_parents_training_films_and_the_sites(adapted, tiny_model_dir):
    """Its training_hashes.txt (the overlap check's list) holds both: an evaluation of either is flagged."""
    from cxr_core.model.folder import ModelFolder
    from cxr_core.safety.overlap import training_hashes

    own = training_hashes(ModelFolder(adapted["model_dir"]).hashes_file)
    parents = training_hashes(ModelFolder(tiny_model_dir).hashes_file)
    site = {e["pixel_hash"] for e in ModelFolder(adapted["model_dir"]).card().site_adaptation["manifest"]}
    assert parents and parents <= own and site <= own


def test_the_manifest_holds_hashes_and_labels_and_no_identifier(adapted):
    from cxr_core.model.folder import ModelFolder

    result = adapted  # its site's films include three DICOM files named and identified "Secret^Name"
    text = ModelFolder(result["model_dir"]).card_file.read_text()
    card = json.loads(text)
    entries = card["site_adaptation"]["manifest"]
    assert len(entries) == result["counts"]["kept"]
    assert all(set(e) == {"sha256", "pixel_hash", "label", "part"} and len(e["sha256"]) == 64 for e in entries)
    assert {e["part"] for e in entries} == {"fold 1", "fold 2", "fold 3"}
    assert {e["label"] for e in entries} == {"NORMAL", "BACTERIAL", "VIRAL"}
    for secret in ("ID-12345", "Secret", "IM-0", "person", ".jpeg", ".dcm"):
        assert secret not in text


@pytest.mark.slow  # two worker processes train a whole adaptation
def test_an_adaptation_trains_on_two_workers_and_the_chief_alone_writes(tmp_path, tiny_model_dir):
    """`site-model adapt --workers 2`: two processes on loopback (MultiWorkerMirroredStrategy) run every fold and
    the final model in step; the chief writes the folder, the model and the result, the other worker nothing (its
    checkpoint copies go at once); the model is kept in the case database."""
    from cxr_core.settings import Settings

    site, home, scratch = _site(tmp_path, per_class=18), tmp_path / "home", tmp_path / "tmp"
    scratch.mkdir()
    env = cli_env(CXR_HOME=str(home), CXR_SITE_MIN_PER_CLASS="8", TMPDIR=str(scratch), **FLOOR)
    r = run_cli(["site-model", "adapt", str(site), "--reader", "Dr Site", "--model", str(tiny_model_dir),
                 "--workers", "2", "--json"], env=env, process=True)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout)
    [run] = [p for p in Settings.from_env(env).layout.site_runs.iterdir() if p.is_dir()]
    workers = json.loads((run / "workers.json").read_text())["workers"]
    assert [(w["role"], w["state"]) for w in workers] == [("chief", "finished"), ("worker", "finished")]
    rows = (run / "history.csv").read_text().splitlines()[1:]
    assert len(rows) == 5 * 8 + result["epoch"]  # every fold's epochs, then the final model's
    assert not (run / "checkpoints").exists() and list(scratch.glob("cxr-train-worker*")) == []
    assert result["stored"] and (Path(result["model_dir"]) / "model.keras").is_file()
    card = json.loads((Path(result["model_dir"]) / "model_card.json").read_text())
    assert card["site_adaptation"]["distribution"] == {"strategy": "MultiWorkerMirroredStrategy", "workers": 2,
                                                       "replicas": 2}
