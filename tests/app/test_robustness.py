"""The Dashboards page's Robustness view (cxr_app/robustness.py) on the shipped model's card: it shows the card's
stress rows and worst cases, the same rows the CLI and the card's Markdown show (cxr_core.model.evidence)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from cxr_core.model.evidence import stress_rows
from cxr_core.model.folder import ModelFolder
from cxr_core.model.registry import Registry
from cxr_core.settings import SHIPPED_MODELS


def _view(model_dir: str) -> None:
    """The script AppTest runs (its source is copied, so it imports what it uses)."""
    from cxr_app.robustness import robustness_view
    from cxr_core.model.folder import ModelFolder

    robustness_view(ModelFolder(model_dir).card())


def test_the_robustness_view_shows_the_cards_stress_rows_and_worst_cases():
    entry = Registry(SHIPPED_MODELS).active()
    card, folder = entry.card, entry.path
    at = AppTest.from_function(_view, kwargs={"model_dir": str(folder)}, default_timeout=60).run()
    assert not at.exception, at.exception
    rows = stress_rows(card.stress, card.threshold_evidence)
    table = at.dataframe[0].value
    assert list(table["condition"]) == [r.condition for r in rows]
    assert list(table["chose_threshold"]) == [r.chose_threshold for r in rows]
    assert table["auc"].tolist() == [round(r.auc, 3) for r in rows]
    family, worst = card.stress.headline()
    shown = {m.label: m.value for m in at.metric}
    assert shown == {f"Worst {metric} ({family})": f"{w.value:.3f}" for metric, w in worst.shown()}
    assert ModelFolder(folder).card() == card  # the view only reads the card


def test_a_card_without_stress_results_says_how_to_measure_them(tmp_path):
    folder = ModelFolder(tmp_path / "m")
    folder.path.mkdir()
    shipped = Registry(SHIPPED_MODELS).active().card
    folder.write_card(shipped.with_fields(stress=None, threshold_evidence=None))
    at = AppTest.from_function(_view, kwargs={"model_dir": str(folder.path)}, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("python -m cxr_core stress DATA_DIR" in i.value for i in at.info)
    assert not at.dataframe
