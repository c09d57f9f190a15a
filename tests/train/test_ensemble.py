"""Cross-validated ensembles: member configs, the merged model, and the whole path on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.config import ModelConfig
from cxr_core.errors import ConfigError
from cxr_core.model.registry import Registry

from tests.conftest import tiny_config


def test_merged_logits_and_cam_are_the_members_means(tmp_path):
    import keras

    from cxr_core.model.gradcam import cam_from_features, evidence_weights
    from cxr_core.model.architecture import CAM_LAYER, LOGITS_LAYER, build_model, has_linear_head, merge_members
    from cxr_core.model.keras_import import load_keras_model

    keras.utils.set_random_seed(0)
    members = [build_model(ModelConfig(filters=[4, 8], dropout=0.0), 32) for _ in range(3)]
    merged = merge_members(members)
    merged.save(tmp_path / "m.keras")
    merged = load_keras_model(tmp_path / "m.keras")  # safe_mode=True
    assert has_linear_head(merged)
    x = np.random.default_rng(0).random((4, 32, 32, 1)).astype(np.float32)

    def parts(model):
        graph = keras.Model(model.inputs, [model.get_layer(CAM_LAYER).output, model.get_layer(LOGITS_LAYER).output])
        f, z = (np.asarray(t) for t in graph(x))
        return f, z, np.asarray(model.get_layer(LOGITS_LAYER).kernel)

    member_parts = [parts(m) for m in members]
    f, z, kernel = parts(merged)
    np.testing.assert_allclose(z, np.mean([p[1] for p in member_parts], axis=0), atol=1e-5)
    raw = lambda feats, k: np.einsum("nhwk,k->nhw", feats, k[:, 1])  # noqa: E731  (CAM before ReLU/normalising)
    np.testing.assert_allclose(raw(f, kernel), np.mean([raw(p[0], p[2]) for p in member_parts], axis=0), atol=1e-5)
    assert cam_from_features(f, kernel, evidence_weights(z)).shape == (4, 8, 8)


@pytest.mark.parametrize("fold", [-1, 2])
def test_member_config_rejects_a_fold_outside_the_folds(tiny_data, fold):
    from train.ensemble import member_config

    with pytest.raises(ConfigError, match=repr(fold)):
        member_config(tiny_config(tiny_data, data={"folds": 2}), fold)


def test_a_tiny_seeded_ensemble_reuses_the_single_run_and_is_judged_on_the_shared_held_out_split(tiny_data, tmp_path):
    from cxr_core.model.architecture import predict_logits
    from cxr_core.validation.dataset import index_dataset, split_for
    from train.ensemble import member_config, train_ensemble
    from train.pipeline import train
    from train.run_folder import RunFolder

    config = tiny_config(tiny_data, train={"epochs": 1, "seeds": [1, 2]})
    runs, registry = tmp_path / "runs", Registry(tmp_path / "reg")
    single = train(member_config(config, 0), runs_dir=runs, register=False, command="pytest", log=lambda s: None)
    log: list[str] = []
    result = train_ensemble(config, runs_dir=runs, registry=registry, command="pytest", log=log.append)
    assert f"Run {single.run_dir.name} already finished" in " ".join(log)  # the single run is member 1, not redone
    entry = registry.get(result.model_id)
    card = entry.card
    assert card.ensemble["members"] == 2 and card.ensemble["seeds"] == [1, 2] and card.name == "tiny-x2"
    assert card.ensemble["member_runs"][0] == single.run_dir.name
    _, val = split_for(index_dataset(tiny_data), config.data.__dict__)
    assert card.internal_validation["n"] == card.data["n_val"] == len(val)  # the one split, not out-of-fold
    assert card.data["n_train"] == len(index_dataset(tiny_data)) - len(val)
    # The evidence is the served model's: the merged graph's logits are the mean of the members' saved ones.
    members = [np.load(RunFolder(runs / name).val_logits_file) for name in card.ensemble["member_runs"]]
    x_val = np.stack([config.data.preprocess().load(r.path) for r in val])
    np.testing.assert_allclose(predict_logits(entry.folder.load_model(), x_val), np.mean(members, axis=0), atol=1e-4)
    assert "mean of 2 members' logits" in card.internal_validation_kind
    assert list(card.member_commands) == ["pytest --member 0", "pytest --member 1"]


def test_a_single_split_run_chooses_a_stress_policy_threshold_on_its_held_out_images(tiny_data, tmp_path):
    from train.pipeline import train

    config = tiny_config(tiny_data, train={"epochs": 1, "threshold_policy": "sensitivity_then_specificity"})
    registry = Registry(tmp_path / "reg")
    result = train(config, runs_dir=tmp_path / "runs", registry=registry, command="pytest", log=lambda s: None)
    card = registry.get(result.model_id).card
    ev = card.threshold_evidence
    assert card.threshold_policy == ev.name == "sensitivity_then_specificity"
    assert card.threshold == ev.per_condition_thresholds[ev.binding_condition]
    assert "soft" in ev.held_out_shifts and "window" not in ev.held_out_shifts  # window is augmented
    n_val = card.data["n_val"]
    rows = {r.condition: r for r in card.stress.conditions}
    assert {"clean", "soft:3", "devices:2", "tone_curve:1"} <= set(rows) and rows["soft:2"].n == n_val
    assert card.stress.worst_acquisition_moderate.specificity.condition.split(":")[0] in \
        ("clean", "soft", "glare", "unsharp", "tone_curve", "annotation")
    calibration = card.guard_calibration
    assert calibration["held_out_images"] == n_val and set(calibration["held_out_rates"]) == \
        {"refused", "refused_layout", "refused_appearance", "unusual", "very_unusual", "population", "flagged"}
    assert card.appearance_check["thresholds"].keys() == {"reconstruction", "code", "detail"}
    text = (registry.get(result.model_id).path / "MODEL_CARD.md").read_text()
    assert "What it trades" in text and "realistic acquisition family" in text


def test_a_tiny_cross_validated_ensemble_is_one_registered_model_with_oof_evidence(tiny_data, tmp_path):
    from cxr_core.validation.dataset import index_dataset
    from cxr_core.model.predict import Predictor
    from train.ensemble import train_ensemble

    config = tiny_config(tiny_data, data={"folds": 2}, train={"epochs": 1, "threshold_policy": "robust_sensitivity"})
    registry = Registry(tmp_path / "reg")
    result = train_ensemble(config, runs_dir=tmp_path / "runs", registry=registry, command="pytest", log=lambda s: None)
    assert result.state == "finished" and [e.model_id for e in registry.list()] == [result.model_id]
    card = registry.get(result.model_id).card
    assert card.ensemble["members"] == 2
    assert card.internal_validation["n"] == len(index_dataset(tiny_data))  # every image scored out of fold
    assert card.threshold_policy == "robust_sensitivity"
    assert card.threshold == card.threshold_evidence.per_condition_thresholds[
        card.threshold_evidence.binding_condition]
    assert {r.condition for r in card.stress.conditions} >= {"clean", "noise:2", "jpeg:3"}
    assert card.input["intensity"] == "percentile"
    folder = registry.get(result.model_id).path
    card_text = (folder / "MODEL_CARD.md").read_text()
    assert "chosen on out-of-fold scores of 2 patient-grouped folds" in card_text and "## Stress suite" in card_text
    assert len((folder / "training_hashes.txt").read_text().split()) == len(index_dataset(tiny_data))
    pred = Predictor(registry.get(result.model_id).path).predict(next((tiny_data / "NORMAL").iterdir()))
    assert pred.error is None and pred.heatmap is not None
    again = train_ensemble(config, runs_dir=tmp_path / "runs", registry=registry, command="pytest", log=lambda s: None)
    assert again.model_id == result.model_id and len(registry.list()) == 1  # a finished ensemble is not redone
