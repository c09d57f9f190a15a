"""The ModelCard and ModelFolder: one typed, validated card, one owner of the folder layout, one model identity."""

import json

import pytest

from cxr_core.model.card import SCHEMA_VERSION, ModelCard
from cxr_core.errors import ModelError, RegistryError
from cxr_core.model.folder import ModelFolder
from cxr_core.model.registry import Registry

INPUT = {"image_size": 32, "pad_to_square": False, "intensity": "percentile"}
_WORST = {"max_severity": 2, **{m: {"value": 0.9, "condition": "clean"} for m in
                                ("auc", "sensitivity", "specificity", "accuracy")}}
STRESS = {"conditions": [{"condition": "clean", "shift": "clean", "severity": 0, "severity_name": "none",
                          "in_training_augmentation": None, "n": 10, "auc": 0.9, "sensitivity": 0.9,
                          "specificity": 0.9, "accuracy": 0.9}], "worst_moderate": _WORST, "worst_severe": _WORST}


def test_a_card_from_before_the_schema_reads_with_one_default_per_field():
    card = ModelCard.from_dict({"name": "old", "version": "1", "input": INPUT}, default_id="folder-name")
    assert card.model_id == "folder-name" and card.schema_version == 1
    assert card.threshold == 0.5 and card.temperature == 1.0 and card.subtype_margin is None and card.cam_scale is None
    assert card.passed_gate and card.binary_metrics == {} and card.num_classes == 3


@pytest.mark.parametrize("field, value, quoted", [
    ("threshold", 1.5, "1.5"), ("threshold", "high", "'high'"), ("temperature", -2.0, "-2.0"),
    ("classes", ["PNEUMONIA", "NORMAL"], "'PNEUMONIA'"), ("model_id", "../etc", "'../etc'"),
    ("stress", [1, 2], "[1, 2]")])
def test_a_bad_value_is_refused_when_the_card_is_read_quoting_it(field, value, quoted):
    data = {"model_id": "m1", "name": "m", "version": "1", "input": INPUT, field: value}
    with pytest.raises(ModelError, match=f"{field}.*{pytest.importorskip('re').escape(quoted)}"):
        ModelCard.from_dict(data)


def test_a_card_without_an_input_block_cannot_be_served():
    with pytest.raises(ModelError, match="no input block"):
        ModelCard.from_dict({"model_id": "m1", "name": "m", "version": "1"})


def test_the_json_round_trips_and_keeps_keys_a_newer_version_wrote():
    data = {"model_id": "m1", "name": "m", "version": "1", "input": INPUT, "threshold": 0.3,
            "stress": STRESS, "from_the_future": {"x": 1}}
    card = ModelCard.from_dict(data)
    out = card.to_dict()
    assert out["from_the_future"] == {"x": 1} and out["threshold"] == 0.3 and out["schema_version"] == 1
    assert "ensemble" not in out  # an optional block that was never fitted stays absent
    assert ModelCard.from_dict(json.loads(json.dumps(out))) == card
    changed = card.with_fields(threshold=0.4, gradcam={"scale": 2.0})
    assert changed.threshold == 0.4 and changed.cam_scale == 2.0 and card.threshold == 0.3  # a copy: frozen
    with pytest.raises(ModelError, match="0"):
        card.with_fields(threshold=0)
    assert SCHEMA_VERSION == ModelCard(model_id="m", name="m", version="1", input=INPUT).schema_version


def test_the_folder_writes_json_and_markdown_and_refuses_a_damaged_card(tmp_path):
    folder = ModelFolder(tmp_path / "m1")
    folder.path.mkdir()
    with pytest.raises(ModelError, match="not a model folder"):
        folder.card()
    folder.write_card(ModelCard(model_id="m1", name="tiny", version="2", input=INPUT, threshold=0.25))
    assert folder.card().threshold == 0.25 and (folder.path / ModelFolder.CARD_MARKDOWN).read_text().startswith("# Model card: tiny v2")
    with pytest.raises(RegistryError, match="not a complete model folder"):  # a card but no model.keras
        Registry(tmp_path / "reg").register(folder.path)
    folder.card_file.write_text(json.dumps({"model_id": "m1", "name": "m", "version": "1", "input": INPUT,
                                            "threshold": 7}))
    with pytest.raises(ModelError, match="has an invalid model card.*threshold 7"):
        folder.card()


def test_one_identity_a_model_registered_under_another_id_states_it_in_its_card(tiny_registry, tmp_path):
    source = tiny_registry.active()
    registry = Registry(tmp_path / "reg")
    entry = registry.register(source.path, "renamed-1")
    assert entry.model_id == entry.card.model_id == ModelFolder(entry.path).card().model_id == "renamed-1"
    assert ModelFolder(source.path).card().model_id == source.model_id  # the source is not touched
    assert registry.register(source.path).model_id == source.model_id  # by default, under the card's own id
