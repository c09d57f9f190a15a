"""External validation (cxr_core.validation.external, `validate-external`) on the controlled model, whose answers
the test sets: refused on a folder that overlaps the model's training films or is too small, recorded in the card
(round trip), the threshold then chosen on the external scores (and the card saying so), shown on every page that
shows figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxr_core.errors import CXRError
from cxr_core.model.card import ModelCard
from cxr_core.model.card_markdown import readme_section, render_markdown
from cxr_core.model.folder import ModelFolder
from cxr_core.safety.overlap import write_training_hashes
from cxr_core.settings import Settings
from cxr_core.validation.evaluation import evaluate_folder
from cxr_core.validation.external import EXTERNAL_POLICY, adopt_external_threshold, external_validation
from testkit import controlled as C
from tests.conftest import cli_env, run_cli

# 12 normal films from 0.05 to 0.38 and 12 pneumonia films from 0.31 to 0.64: at the card's 0.6 sensitivity is 2/12;
# the highest threshold with sensitivity >= 0.95 keeps all 12 (between 0.29 and 0.31)
NORMAL_P = [0.05 + 0.03 * i for i in range(12)]
PNEUMONIA_P = [0.31 + 0.03 * i for i in range(12)]
ANSWERS = [("NORMAL", p) for p in NORMAL_P] + [("BACTERIAL" if i % 2 else "VIRAL", p) for i, p in enumerate(PNEUMONIA_P)]


def _policy(min_per_class: int):
    return Settings.from_env({"CXR_SITE_MIN_PER_CLASS": str(min_per_class)}).site_policy


@pytest.fixture
def model(controlled_model_dir, tmp_path):
    """The controlled model with a training hash list of films that are not the site's."""
    folder = C.variant(controlled_model_dir, tmp_path / "model")
    train = C.labelled_folder(tmp_path / "train", [("NORMAL", 0.1), ("BACTERIAL", 0.9)], seed=500)
    write_training_hashes(ModelFolder(folder).hashes_file, sorted(train.rglob("*.png")))
    return folder


@pytest.fixture
def site(tmp_path):
    return C.labelled_folder(tmp_path / "site", ANSWERS)


def _evaluated(model, site):
    result = evaluate_folder(model, site, n_boot=50)
    return result, ModelFolder(model).card()


def test_the_block_holds_the_external_figures_and_the_threshold_chosen_on_them(model, site):
    result, card = _evaluated(model, site)
    block = external_validation(result.summary, result.labels, result.probs, card, " site A ", _policy(12),
                                about="another period's patients", n_boot=200)
    assert block["site"] == "site A" and block["n"] == 24 and block["images_in_training"] == 0
    assert block["class_counts"] == {"NORMAL": 12, "BACTERIAL": 6, "VIRAL": 6}
    # AUC from the known answers: pairs (normal, pneumonia) ordered right, ties counted half
    pairs = [(n < p) + 0.5 * (n == p) for n in NORMAL_P for p in PNEUMONIA_P]
    assert block["auc"] == pytest.approx(np.mean(pairs), abs=1e-6)
    at = block["at_target_sensitivity"]
    assert at["target_sensitivity"] == 0.95 and at["sensitivity"] == 1.0
    assert NORMAL_P[8] < at["threshold"] < PNEUMONIA_P[0]  # halfway below the lowest pneumonia film
    assert at["specificity"] == pytest.approx(9 / 12)  # 0.32, 0.35, 0.38 sit above it
    assert at["threshold_ci95"][0] <= at["threshold"] <= at["threshold_ci95"][1]
    then = block["at_card_threshold"]
    assert then["threshold"] == C.THRESHOLD and then["sensitivity"] == pytest.approx(2 / 12)  # 0.61 and 0.64
    assert block["three_class"]["subtype_margin"] == C.MARGIN


def test_refused_where_the_films_overlap_training_or_are_too_few_or_unchecked(model, site, tmp_path):
    result, card = _evaluated(model, site)
    with pytest.raises(CXRError, match="too few films \\(NORMAL 12, PNEUMONIA 12; at least 13"):
        external_validation(result.summary, result.labels, result.probs, card, "site A", _policy(13))
    write_training_hashes(ModelFolder(model).hashes_file, sorted(site.rglob("*.png"))[:3])
    result, card = _evaluated(model, site)
    with pytest.raises(CXRError, match="3 of its 24 films are in the model's training data"):
        external_validation(result.summary, result.labels, result.probs, card, "site A", _policy(12))
    ModelFolder(model).hashes_file.unlink()
    result, card = _evaluated(model, site)
    with pytest.raises(CXRError, match="no training hash list"):
        external_validation(result.summary, result.labels, result.probs, card, "site A", _policy(12))


def test_the_card_round_trips_and_the_threshold_policy_chooses_on_the_external_scores(model, site):
    result, card = _evaluated(model, site)
    block = external_validation(result.summary, result.labels, result.probs, card, "site A", _policy(12),
                                about="another period's patients", n_boot=100)
    recorded = card.with_fields(external_validation=block)
    again = ModelCard.from_dict(json.loads(json.dumps(recorded.to_dict())))
    assert again == recorded and again.external_label == "External (site A, another period's patients)"
    assert card.external_label is None

    adopted = adopt_external_threshold(recorded)
    assert adopted.threshold == block["at_target_sensitivity"]["threshold"] and adopted.threshold_policy == EXTERNAL_POLICY
    assert adopted.external_validation["internal_threshold"] == {"threshold": C.THRESHOLD, "policy": card.threshold_policy}
    assert adopt_external_threshold(adopted).external_validation["internal_threshold"]["threshold"] == C.THRESHOLD
    again = external_validation(result.summary, result.labels, result.probs, adopted, "site A", _policy(12), n_boot=100)
    assert adopt_external_threshold(adopted.with_fields(external_validation=again)).external_validation[
        "internal_threshold"]["threshold"] == C.THRESHOLD  # validated again: the replaced threshold stays on record
    markdown = render_markdown(adopted)
    assert f"**{adopted.threshold:.3f}** (policy `external_sensitivity`, chosen on 24 films of site A (external))" in markdown
    assert "## External (site A, another period's patients)" in markdown
    assert f"It replaced the internal policy's threshold {C.THRESHOLD:.3f}" in markdown
    assert "### External (site A, another period's patients)" in readme_section(adopted, "assets/models/x")
    with pytest.raises(CXRError, match="no external validation"):
        adopt_external_threshold(card)


def test_the_command_records_the_figures_and_refuses_overlap_and_small_folders(model, site, tmp_path):
    args = ["validate-external", str(model), str(site), "--site", "site A", "--bootstrap", "100"]
    small = run_cli(args, cli_env(CXR_SITE_MIN_PER_CLASS="13"))
    assert small.returncode == 2 and "too few films" in small.stderr and "Traceback" not in small.stderr
    assert ModelFolder(model).card().external_validation is None  # nothing refused is written

    done = run_cli([*args, "--adopt-threshold"], cli_env(CXR_SITE_MIN_PER_CLASS="12"))
    assert done.returncode == 0, done.stderr
    card = ModelFolder(model).card()
    assert card.external_validation["n"] == 24 and card.threshold_policy == EXTERNAL_POLICY
    assert f"operating threshold now {card.threshold:.3f}" in done.stdout
    assert "External (site A" in ModelFolder(model).path.joinpath(ModelFolder.CARD_MARKDOWN).read_text()

    write_training_hashes(ModelFolder(model).hashes_file, sorted(site.rglob("*.png")))
    overlap = run_cli(args, cli_env(CXR_SITE_MIN_PER_CLASS="12"))
    assert overlap.returncode == 2 and "24 of its 24 films are in the model's training data" in overlap.stderr


def test_the_sidebar_and_the_dashboards_show_the_external_figures_beside_the_internal(model, site, tmp_path,
                                                                                       monkeypatch):
    from streamlit.testing.v1 import AppTest

    from cxr_core.model.registry import Registry
    from tests.conftest import PROJECT_ROOT

    result, card = _evaluated(model, site)
    ModelFolder(model).update_card(external_validation=external_validation(
        result.summary, result.labels, result.probs, card, "site A", _policy(12), about="another period's patients",
        n_boot=100))
    registry = Registry(tmp_path / "registry")
    registry.set_default(registry.register(model).model_id)
    monkeypatch.setenv("CXR_REGISTRY", str(registry.root))
    monkeypatch.chdir(PROJECT_ROOT)
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.run()
    for page in ("app_pages/viewer.py", "app_pages/dashboards.py"):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        sidebar = [m.value for m in at.sidebar.markdown]
        label = "**External (site A, another period's patients)**"
        assert label in sidebar and sidebar.index(label) < sidebar.index("**Internal (same hospital as training)**")
        assert any(c.value.startswith("n = 24 films (NORMAL 12, BACTERIAL 6, VIRAL 6") for c in at.sidebar.caption)
    assert label in [m.value for m in at.main.markdown]  # the Dashboards, beside the internal validation
