"""The chest-appearance check (cxr_core.safety.appearance): an autoencoder of chest films refuses what it cannot
explain. Unit tests on tiny inputs, the tiny model end to end, and the shipped model on the foreign-input set."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from cxr_core.fitting.appearance import fit_appearance
from cxr_core.safety.appearance import AppearanceCheck, AutoencoderRecipe

from tests.conftest import SHIPPED_REGISTRY
from testkit.foreign import FOREIGN_KINDS, encode, foreign_image, foreign_set
from testkit.synthetic import non_xray, phantom_cxr

# A small, quick check on raw thumbnails (the shipped models' equalised ones: test_equalised_thumbnails_...)
QUICK = AutoencoderRecipe(size=32, filters=(8, 16), code=8, epochs=8, batch_size=32, min_steps=120, equalize=False)


def _films(n: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    return np.stack([phantom_cxr(size, rng, int(i % 3)) for i in range(n)])


@pytest.fixture(scope="module")
def quick_check():
    rng = np.random.default_rng(0)
    return fit_appearance(_films(96, rng), _films(48, rng), QUICK), rng


def test_it_refuses_what_it_cannot_explain_and_keeps_chest_films(quick_check):
    check, rng = quick_check
    films = _films(40, rng)
    assert not check.findings(films)["refused"].any()
    foreign = np.stack([non_xray("noise", 48, rng), non_xray("document", 48, rng), non_xray("checker", 48, rng)])
    assert check.findings(foreign)["refused"].all()
    answers = check.checks(np.concatenate([films[:1], foreign]))
    assert answers[0].reasons == () and answers[0].excess <= 1
    assert all(len(a.reasons) == 1 and a.reasons[0].startswith("This does not look like a chest radiograph (")
               and a.excess > 1 for a in answers[1:])
    # the excess is the signal furthest over its threshold, whichever it is: the check's own, and a copy whose
    # reconstruction threshold is a hundredfold, so that another signal is furthest out
    scores = check.scores(foreign)
    skewed = copy.copy(check)
    skewed.thresholds = {**check.thresholds, "reconstruction": check.thresholds["reconstruction"] * 100}
    for each in (check, skewed):
        ratios = np.array([scores[k] / each.thresholds[k] for k in scores])
        assert [a.excess for a in each.checks(foreign)] == pytest.approx(ratios.max(axis=0).tolist())
    assert np.array([scores[k] / skewed.thresholds[k] for k in scores]).argmax(axis=0).min() > 0


def test_a_checks_excess_is_its_furthest_signal_and_a_nan_signal_hides_none():
    from cxr_core.safety.appearance import furthest

    scores = {"reconstruction": np.array([np.nan, 0.5]), "code": np.array([4.0, 1.0]), "detail": np.array([1.0, 3.0])}
    assert furthest(scores, {"reconstruction": 1.0, "code": 2.0, "detail": 1.0}).tolist() == [2.0, 3.0]


def test_equalised_thumbnails_see_the_layout_whatever_the_tone_curve():
    """With `equalize` (the default for new checks) a film and the same film through another unit's tone curve give
    nearly the same thumbnail; raw thumbnails differ. The flag is kept with the check, and older checks read False."""
    from cxr_core.safety.appearance import thumbnails

    film = phantom_cxr(64, np.random.default_rng(3), 1)
    toned = film ** 0.5  # a brighter, flatter tone curve
    raw = np.abs(thumbnails(film, 32) - thumbnails(toned, 32)).mean()
    equalised = np.abs(thumbnails(film, 32, equalize=True) - thumbnails(toned, 32, equalize=True)).mean()
    assert equalised < 0.02 < raw and AutoencoderRecipe().equalize


def test_the_equalise_flag_is_kept_with_the_check_and_older_checks_read_without(quick_check, tmp_path):
    from dataclasses import replace

    from cxr_core.fileio import read_npz, write_npz_atomic
    from cxr_core.model.keras_import import load_keras_model

    check, _ = quick_check
    stats, network = tmp_path / "appearance.npz", tmp_path / "appearance.keras"
    replace(check, equalize=True, detail_version=2).save(stats, network)
    loaded = AppearanceCheck.load(stats, network, load_keras_model)
    assert loaded.equalize is True and loaded.detail_version == 2
    # Saved before the fields existed: its thresholds were calibrated on raw inputs, and are read that way.
    older = {k: v for k, v in read_npz(stats).items() if k not in ("equalize", "detail_version")}
    write_npz_atomic(stats, **older)
    loaded = AppearanceCheck.load(stats, network, load_keras_model)
    assert loaded.equalize is False and loaded.detail_version == 1


def test_the_detail_signal_is_the_same_whatever_the_intensity_policy_and_a_label_does_not_make_a_film_busy():
    """Version 2 (new checks): a model without an intensity policy passes a flat, dim rendering through, whose raw
    fine structure is a fraction of the same film standardised (a threshold on it would pass a foreign image's flat
    noisy background); equalised, they match. A burned-in label fills a few blocks of the grid: the film's detail
    barely moves, while a mean over the film rises with it."""
    from cxr_core.safety.appearance import detail_energy

    film = phantom_cxr(96, np.random.default_rng(5), 1)
    film = (film - film.min()) / (film.max() - film.min())
    dim = 0.2 + 0.15 * film
    raw, equalised = detail_energy(np.stack([film, dim])), detail_energy(np.stack([film, dim]), version=2)
    assert raw[1] < 0.25 * raw[0]
    assert equalised[1] == pytest.approx(equalised[0], rel=0.25) and AutoencoderRecipe().detail_version == 2
    labelled = film.copy()
    stripes = (np.indices((12, 24)).sum(0) % 2).astype(np.float32)  # a dense block of "text" in one corner
    labelled[4:16, 4:28] = stripes
    before, after = detail_energy(np.stack([film, labelled]), version=2)
    raw_before, raw_after = detail_energy(np.stack([film, labelled]))
    assert after < 1.1 * before and raw_after > 1.3 * raw_before


def test_thresholds_come_from_held_out_scores_not_the_training_films(quick_check):
    """The autoencoder reproduces its own training films best: their scores would understate new films'."""
    from cxr_core.safety.appearance import RULES

    check, _ = quick_check
    rng = np.random.default_rng(0)
    fit, held = _films(96, rng), _films(48, rng)  # the very arrays the fixture used
    held_scores, fit_scores = check.scores(held), check.scores(fit)
    assert set(check.thresholds) == set(RULES) == {"reconstruction", "code", "detail"}
    for key, rule in RULES.items():
        assert check.thresholds[key] == pytest.approx(rule.calibrate(held_scores[key]), rel=1e-5), key
    assert check.thresholds["reconstruction"] != pytest.approx(RULES["reconstruction"].calibrate(
        fit_scores["reconstruction"]), rel=1e-3)


def test_it_round_trips_through_the_model_folder(quick_check, tmp_path):
    from cxr_core.model.folder import ModelFolder
    from cxr_core.model.keras_import import load_keras_model

    check, rng = quick_check
    folder = ModelFolder(tmp_path)
    check.save(folder.appearance_file, folder.appearance_model_file)
    assert folder.appearance_model_file.is_file() and folder.appearance_file.is_file()
    again = AppearanceCheck.load(folder.appearance_file, folder.appearance_model_file, load_keras_model)
    x = np.concatenate([_films(4, rng), non_xray("noise", 48, rng)[None]])
    for key, value in check.scores(x).items():
        np.testing.assert_allclose(again.scores(x)[key], value, rtol=1e-5)
    assert again.thresholds == check.thresholds
    missing = ModelFolder(tmp_path / "missing")
    assert AppearanceCheck.load(missing.appearance_file, missing.appearance_model_file, load_keras_model) is None


def test_the_foreign_set_has_every_kind_and_is_reproducible():
    from cxr_core.inputs.imaging import load_image
    from cxr_core.safety.intended_use import assess

    items = foreign_set(2, seed=3)
    assert [k for k, _ in items] == [k for k in FOREIGN_KINDS for _ in range(2)]
    assert items == foreign_set(2, seed=3) and items != foreign_set(2, seed=4)
    for kind, data in items:  # each decodes, and none is caught by the colour or blank rules before the guards
        image = load_image(data)
        assert assess(image).assessed, kind
    phantom = foreign_image("ct_head_phantom", np.random.default_rng(0))
    assert phantom.ndim == 3 and (phantom[..., 0] == phantom[..., 2]).all()  # RGB, but grey


def test_the_tiny_model_refuses_noise_a_text_page_and_a_drawing(tiny_predictor):
    """End to end through Predictor: the tiny model's own guards, fitted on its phantom films, refuse them."""
    import cv2

    rng = np.random.default_rng(11)
    inputs = {"noise": cv2.imencode(".png", (rng.random((96, 96)) * 255).astype(np.uint8))[1].tobytes(),
              "text page": encode(foreign_image("text_page", rng), rng, "text_page"),
              "drawing": encode(foreign_image("shapes", rng), rng, "shapes")}
    assert tiny_predictor.appearance is not None
    for name, data in inputs.items():
        pred = tiny_predictor.predict(data, name=name)
        assert pred.error is None and not pred.assessed and pred.label is None, (name, pred.warnings)
        assert pred.pneumonia_probability is None and pred.out_of_distribution
    refused_by_appearance = [name for name, data in inputs.items() if any(
        r.startswith("This does not look like a chest radiograph (")
        for r in tiny_predictor.predict(data).not_assessed_reasons)]
    assert refused_by_appearance == list(inputs)
    recipe = tiny_predictor.card.appearance_check["recipe"]
    assert recipe["size"] == AutoencoderRecipe().size
    assert (recipe["epochs"], recipe["min_steps"]) == (2, 20)  # the tiny config's [guards] budget, recorded


# ------------------------------------------------------------------------------------ the shipped model
@pytest.fixture(scope="module")
def shipped():
    from cxr_core.model.predict import Predictor
    from cxr_core.model.registry import Registry

    entry = Registry(SHIPPED_REGISTRY).active()
    if entry is None:
        pytest.skip("no shipped model in assets/models")
    return Predictor(entry.path)


@pytest.mark.parametrize("kind", FOREIGN_KINDS)
def test_each_foreign_kind_is_refused_by_the_shipped_model(shipped, kind):
    """Seeds other than bench/ood.py's: new draws of each kind, through the product's own decision."""
    assert shipped.appearance is not None
    preds = [shipped.predict(data, name=kind) for _, data in foreign_set(4, seed=101, kinds=(kind,))]
    assert all(p.error is None for p in preds)
    assessed = [p.warnings for p in preds if p.assessed]
    assert assessed == [], f"{len(assessed)} of {len(preds)} {kind} images were assessed"


@pytest.mark.slow
def test_the_shipped_model_assesses_every_adult_reference_film(shipped):
    """An adult's chest film is a chest film (issue 41): the 55 adult reference films are assessed, none refused as a
    foreign input. In-sample for the population check, which was fitted on these films; bench/ood.py gives the
    figures with it cross-validated by patient."""
    from cxr_core.safety.population import DEFAULT_ADULT_REFERENCE

    if not DEFAULT_ADULT_REFERENCE.is_dir():
        pytest.skip(f"the adult reference films are not here ({DEFAULT_ADULT_REFERENCE})")
    files = sorted((DEFAULT_ADULT_REFERENCE / "images").iterdir())
    refused = [f.name for f in files if not shipped.predict(f).assessed]
    assert len(files) == 55 and refused == []


def test_the_shipped_model_refuses_at_most_one_percent_of_held_out_pediatric_films(shipped):
    """The figure `fit-ood` stored: each held-out film judged by thresholds calibrated without its patient."""
    card = shipped.card
    calibration = card.guard_calibration
    rates = calibration["held_out_rates"]
    assert calibration["held_out_images"] >= 500 and "without its patient" in calibration["note"]
    assert rates["refused"] <= 0.01 and rates["flagged"] <= 0.02
    # a refusal needs a chest check that refuses; an adult-looking child's film one check refuses may be assessed
    assert rates["refused"] <= rates["refused_layout"] + rates["refused_appearance"]
    assert card.appearance_check["thresholds"] == pytest.approx(shipped.appearance.thresholds)
