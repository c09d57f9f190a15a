"""One operating point: frozen, passed explicitly, never stored on the shared Predictor; a site point only as the
deployment's rules allow, from the CLI and the Dashboards alike."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading

import numpy as np
import pytest

from cxr_core.errors import CXRError
from cxr_core.model.card import ModelCard
from cxr_core.model.operating_point import OperatingPoint, resolve, valid_threshold
from cxr_core.settings import SitePointPolicy
from cxr_core.validation.site_point import govern_site_point

from testkit import inputs
from tests.conftest import cli_env, run_cli


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "x", None, float("nan")])
def test_one_validity_check_quotes_the_bad_threshold(bad):
    with pytest.raises(CXRError, match="strictly between 0 and 1"):
        valid_threshold(bad)


def test_an_operating_point_is_frozen_and_checked_when_built():
    point = OperatingPoint(0.3, "site", set_by="Dr A")
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.threshold = 0.9  # type: ignore[misc]
    with pytest.raises(CXRError, match="'clinic'"):
        OperatingPoint(0.3, "clinic")
    card = ModelCard(model_id="m", name="m", version="1", input={"image_size": 32}, threshold=0.7)
    assert point.wording == "the site's operating point" and OperatingPoint.of_model(card) == OperatingPoint(0.7)


def test_two_sessions_at_once_with_different_points_never_leak_into_each_other_or_an_evaluation(tiny_predictor,
                                                                                                 tiny_data):
    """The app's sessions share one Predictor: each passes its own point; neither moves the shared default."""
    from cxr_core.validation.evaluation import evaluate_folder

    data = inputs.png_gray8(seed=5)
    p = tiny_predictor.predict(data).pneumonia_probability
    low, high = OperatingPoint(max(0.001, p - 0.01), "site"), OperatingPoint(min(0.999, p + 0.01), "site")
    model = tiny_predictor.model_point
    seen: dict[str, set] = {"low": set(), "high": set(), "eval": set()}
    errors: list[BaseException] = []

    def session(name: str, point: OperatingPoint) -> None:
        try:
            for _ in range(15):
                pred = tiny_predictor.predict(data, point=point)
                seen[name].add((pred.label, pred.threshold, pred.threshold_source))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def evaluation() -> None:
        try:
            s = evaluate_folder(tiny_predictor.model_dir, tiny_data, n_boot=0, save=False, predictor=tiny_predictor).summary
            seen["eval"].add((s["binary"]["threshold"], s["threshold_source"]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=session, args=("low", low)), threading.Thread(target=session, args=("high", high)),
               threading.Thread(target=evaluation)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert seen["low"] == {("PNEUMONIA", round(low.threshold, 6), "site")}
    assert seen["high"] == {("NORMAL", round(high.threshold, 6), "site")}
    assert seen["eval"] == {(model.threshold, "model")}  # the evaluation never saw either session's point
    assert tiny_predictor.model_point == model and not hasattr(tiny_predictor, "set_operating_point")


def _labels_and_scores(n_pos: int, n_neg: int, missed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    y = np.array([1] * n_pos + [0] * n_neg)
    p = np.where(y == 1, 0.9, 0.1)
    p[:missed] = 0.2  # pneumonia read as normal at 0.5
    return y, p


def test_a_site_point_from_10_plus_10_images_is_refused_with_the_rule_and_numbers():
    y, p = _labels_and_scores(10, 10)
    with pytest.raises(CXRError, match=r"too few local films.*50 per class needed.*10 pneumonia and 10 normal"):
        govern_site_point(0.5, y, p, SitePointPolicy())


def test_a_site_point_whose_sensitivity_bound_falls_below_the_floor_is_refused():
    y, p = _labels_and_scores(60, 60, missed=6)  # sensitivity 0.9: its lower 95 % bound is about 0.80
    with pytest.raises(CXRError, match=r"sensitivity is too uncertain.*it is 0\.900.*lower bound is 0\.90"):
        govern_site_point(0.5, y, p, SitePointPolicy())
    ev = govern_site_point(0.5, *_labels_and_scores(60, 60), SitePointPolicy())  # 60 of 60: the bound is 0.94
    assert ev["sensitivity"] == 1.0 and ev["sensitivity_ci95"][0] >= 0.9 and ev["n"] == 120


def _folder(tiny_data, root, per_class: int):
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir(parents=True)
        for f in sorted((tiny_data / cls).iterdir())[:per_class]:
            shutil.copy(f, root / cls / f.name)
    return root


def test_site_point_cli_refuses_then_sets_shows_in_predict_and_reverts(tiny_registry, tiny_data, site_data, tmp_path,
                                                                       own_app_home):
    from cxr_core.validation.evaluation import evaluate_folder

    model_dir = tiny_registry.active().path
    small = evaluate_folder(model_dir, _folder(tiny_data, tmp_path / "ten", 10), n_boot=0).saved_to.name
    own = evaluate_folder(model_dir, tiny_data, n_boot=0).saved_to.name  # the model's own training films
    full = evaluate_folder(model_dir, site_data, n_boot=0).saved_to.name
    env = cli_env(tiny_registry)
    film = tmp_path / "film.png"
    film.write_bytes(inputs.png_gray8(seed=9))
    p = json.loads(run_cli(["predict", str(film), "--json"], env).stdout)["pneumonia_probability"]
    site = round(max(0.001, p - 0.01), 3)  # just below this film's P: the site point reads it PNEUMONIA

    refused = run_cli(["site-point", "set", str(site), "--evaluation", small, "--reader", "Dr Site", "--yes"], env)
    assert refused.returncode == 2 and "too few local films" in refused.stderr and "10 pneumonia and 10 normal" in refused.stderr
    assert "min_per_class" not in refused.stderr  # plain words, not the rule's code name
    unconfirmed = run_cli(["site-point", "set", str(site), "--evaluation", full, "--reader", "Dr Site"], env)
    assert unconfirmed.returncode == 2 and "needs a confirmation" in unconfirmed.stderr
    lenient = {**env, "CXR_SITE_MIN_PER_CLASS": "16", "CXR_SITE_SENSITIVITY_FLOOR": "0.05"}
    trained_on = run_cli(["site-point", "set", str(site), "--evaluation", own, "--reader", "Dr Site", "--yes"], lenient)
    assert trained_on.returncode == 2 and "includes the model's training films" in trained_on.stderr
    done = run_cli(["site-point", "set", str(site), "--evaluation", full, "--reader", "Dr Site", "--yes"], lenient)
    assert done.returncode == 0, done.stderr
    shown = json.loads(run_cli(["site-point", "show", "--json"], env).stdout)
    assert (shown["threshold"], shown["threshold_source"], shown["set_by"]) == (site, "site", "Dr Site")
    assert shown["evidence"]["evaluation"] == full and shown["evidence"]["n"] == 48  # 16 normal, 32 pneumonia
    decided = json.loads(run_cli(["predict", str(film), "--json"], env).stdout)
    assert (decided["threshold"], decided["threshold_source"], decided["label"]) == (site, "site", "PNEUMONIA")
    reverted = run_cli(["site-point", "revert", "--reader", "Dr Site"], env)
    assert reverted.returncode == 0 and "model's own threshold decides again" in reverted.stdout
    back = json.loads(run_cli(["predict", str(film), "--json"], env).stdout)
    assert back["threshold_source"] == "model" and back["threshold"] == round(tiny_registry.active().card.threshold, 6)
    actions = [json.loads(line) for line in run_cli(["cases", "audit", "--json"], env).stdout.splitlines()]
    assert [(a["action"], a["actor"]) for a in actions] == [("site-threshold", "Dr Site")] * 2


def test_resolve_reads_the_store_each_time(own_app_home, tiny_predictor):
    from cxr_core.cases.store import CaseStore

    store = CaseStore.open()
    card = tiny_predictor.card
    assert resolve(card, store) == OperatingPoint.of_model(card) and resolve(card, None).source == "model"
    store.record_site_point(card.model_id, 0.42, "Dr A")
    assert resolve(card, store).threshold == 0.42
