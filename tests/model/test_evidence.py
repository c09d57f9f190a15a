"""The card's typed evidence blocks: the shipped card's blocks read and write back unchanged, a bad value is refused
naming the field, and one function makes the stress table every rendering shows."""

import copy
import json
from pathlib import Path

import pytest

from cxr_core.errors import ModelError
from cxr_core.model.card import ModelCard
from cxr_core.model.card_markdown import render_markdown
from cxr_core.model.evidence import StressReport, ThresholdEvidence, stress_rows
from cxr_core.model.folder import ModelFolder

SHIPPED = next((Path(__file__).resolve().parents[2] / "assets" / "models").glob(f"*/{ModelFolder.CARD}")).parent


@pytest.fixture(scope="module")
def shipped_json() -> dict:
    return json.loads((SHIPPED / ModelFolder.CARD).read_text())


def test_the_shipped_card_reads_typed_and_writes_back_byte_for_byte(shipped_json):
    card = ModelFolder(SHIPPED).card()
    assert isinstance(card.stress, StressReport) and isinstance(card.threshold_evidence, ThresholdEvidence)
    assert card.stress.worst_moderate.max_severity == 2 and card.stress.conditions[0].condition == "clean"
    from cxr_core.model.card_markdown import trained_threshold

    assert trained_threshold(card) == card.threshold_evidence.per_condition_thresholds[
        card.threshold_evidence.binding_condition]  # the training's choice (an external one may replace it: on record)
    if card.threshold_policy == "external_sensitivity":
        assert card.threshold == card.external_validation["at_target_sensitivity"]["threshold"]
    assert json.dumps(card.to_dict(), indent=2) == (SHIPPED / ModelFolder.CARD).read_text()
    assert render_markdown(card) == (SHIPPED / ModelFolder.CARD_MARKDOWN).read_text()


def test_each_block_round_trips_and_keeps_keys_a_newer_version_wrote(shipped_json):
    stress = {**shipped_json["stress"], "from_the_future": [1]}
    stress["conditions"] = [{**stress["conditions"][0], "new_metric": 0.5}, *stress["conditions"][1:]]
    assert StressReport.from_dict(stress).to_dict() == stress
    policy = {"name": "sensitivity", "target_sensitivity": 0.95}
    assert ThresholdEvidence.from_dict(policy).to_dict() == policy  # the fields it never had stay absent


@pytest.mark.parametrize("block, path, value, quoted", [
    ("stress", ("conditions", 3, "auc"), 1.7, "'auc' = 1.7"),
    ("stress", ("conditions", 0, "severity"), "mild", "'severity' = 'mild'"),
    ("stress", ("worst_moderate", "sensitivity", "value"), None, "'value' = None"),
    ("threshold_evidence", ("per_condition_thresholds", "clean"), "x", "'per_condition_thresholds'"),
    ("threshold_evidence", ("max_severity",), -1, "'max_severity' = -1")])
def test_a_bad_value_in_a_block_is_refused_when_the_card_is_read_naming_the_field(shipped_json, block, path, value,
                                                                                   quoted):
    data = copy.deepcopy(shipped_json)
    target = data[block]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ModelError, match=f"{data['model_id']}: .*{pytest.importorskip('re').escape(quoted)}"):
        ModelCard.from_dict(data)


def test_a_block_without_a_required_field_is_refused_naming_it(shipped_json):
    stress = {k: v for k, v in shipped_json["stress"].items() if k != "worst_severe"}
    with pytest.raises(ModelError, match="stress has no 'worst_severe'"):
        StressReport.from_dict(stress)


def test_the_stress_table_marks_the_conditions_the_policy_chose_on(shipped_json):
    card = ModelFolder(SHIPPED).card()
    rows = stress_rows(card.stress, card.threshold_evidence)
    assert [r.condition for r in rows] == [c["condition"] for c in shipped_json["stress"]["conditions"]]
    chosen = {r.condition for r in rows if r.chose_threshold}
    assert chosen == set(shipped_json["threshold_evidence"]["per_condition_thresholds"]) and "clean" in chosen
    clean = rows[0]
    assert (clean.family, clean.in_augmentation) == ("-", "-")
    assert {r.in_augmentation for r in rows[1:]} == {"yes", "no"}
    assert {r.condition for r in stress_rows(card.stress) if r.chose_threshold} == {"clean"}  # no policy: clean alone


def test_the_card_says_how_an_ensemble_was_judged_and_which_members_a_site_model_adapts(shipped_json):
    card = ModelFolder(SHIPPED).card()
    single = render_markdown(card.with_fields(ensemble=None, site_adaptation=None, data={**card.data, "folds": 0}))
    assert "internal validation, scored by the mean of" not in single and "**Site-adapted**" not in single
    assert "the same recipe with seeds" not in single and "out-of-fold scores of" not in single
    seeded = card.with_fields(ensemble={"members": 2, "seeds": [1, 2]}, data={**card.data, "folds": 0})
    text = render_markdown(seeded)
    assert "chosen on" in text and "scored by the mean of 2 members" in text
    assert "the same recipe with seeds [1, 2]" in text and "out-of-fold scores of 2" not in text
    folds = render_markdown(card.with_fields(ensemble={"members": 5}, data={**card.data, "folds": 5}))
    assert "out-of-fold scores of 5 patient-grouped folds" in folds and "the same recipe with seeds" not in folds
    adapted = render_markdown(seeded.with_fields(site_adaptation={
        "parent_model_id": "parent-id", "members_adapted": "all 2 members of the parent's ensemble, together"}))
    assert "**Site-adapted** from `parent-id`" in adapted and "It adapts all 2 members" in adapted


def test_every_layer_of_an_ensemble_is_reached_members_included():
    """Site adaptation freezes BatchNorm through all_layers: a member's layers sit inside a nested model."""
    import keras

    from cxr_core.config import ModelConfig
    from cxr_core.model.architecture import all_layers, build_model, merge_members

    merged = merge_members([build_model(ModelConfig(filters=[4, 8]), 32) for _ in range(2)])
    norms = [layer for layer in all_layers(merged) if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 2 * sum(isinstance(layer, keras.layers.BatchNormalization)
                                 for layer in merged.get_layer("member1").layers) > 0
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in merged.layers)  # why it is needed
