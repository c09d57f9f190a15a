"""The dashboards at the model's own threshold show exactly the model card's figures."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import PROJECT_ROOT


def test_dashboard_defaults_agree_with_the_model_card(monkeypatch, tiny_registry):
    monkeypatch.setenv("CXR_REGISTRY", str(tiny_registry.root))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("app_pages/dashboards.py").run()
    card = tiny_registry.active().card.binary_metrics
    shown = {m.label: float(m.value) for m in at.main.metric}
    for label, key in (("Sensitivity", "sensitivity"), ("Specificity", "specificity"), ("Accuracy", "accuracy"), ("AUC", "auc")):
        assert shown[label] == pytest.approx(card[key], abs=1e-3)
