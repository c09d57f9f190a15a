"""Model builders: flat graphs with the shared layer contract, weights options, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.config import ModelConfig
from cxr_core.errors import ConfigError, WeightsUnavailableError
from cxr_core.model.architecture import CAM_LAYER, LOGITS_LAYER, OUTPUT_LAYER, build_model, trainable_parameter_count


@pytest.mark.parametrize("backbone", ["cxrnet", "resnet50", "efficientnetb0", "mobilenetv2", "densenet121"])
@pytest.mark.parametrize("num_classes", [2, 3])
def test_every_backbone_builds_a_flat_graph_with_the_contract(backbone, num_classes):
    import keras

    model = build_model(ModelConfig(backbone=backbone, num_classes=num_classes, filters=[8, 16]), 64)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers), "nested model breaks Grad-CAM"
    for name in (CAM_LAYER, LOGITS_LAYER, OUTPUT_LAYER):
        model.get_layer(name)
    out = np.asarray(model(np.random.rand(2, 64, 64, 1).astype("float32")))
    assert out.shape == (2, num_classes)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)


def test_freezing_by_count_and_by_layer_name():
    full = build_model(ModelConfig(backbone="resnet50"), 64)
    frozen = build_model(ModelConfig(backbone="resnet50", trainable_layers=0), 64)
    top = build_model(ModelConfig(backbone="resnet50", freeze_until="conv4_block6_out"), 64)
    by_index = build_model(ModelConfig(backbone="resnet50", freeze_until="143"), 64)  # the first 143 layers of keras ResNet50 end at conv4_block6_out
    assert trainable_parameter_count(by_index) == trainable_parameter_count(top)
    head_only = 2048 * 3 + 3
    assert trainable_parameter_count(frozen) == head_only
    assert head_only < trainable_parameter_count(top) < trainable_parameter_count(full)
    with pytest.raises(ConfigError, match="'no_such_layer'"):
        build_model(ModelConfig(backbone="resnet50", freeze_until="no_such_layer"), 64)


def test_extra_dense_head_layer():
    model = build_model(ModelConfig(backbone="cxrnet", filters=[8], dense_units=16), 32)
    assert model.get_layer("head_dense").units == 16


def test_imagenet_offline_fails_with_a_clear_message(monkeypatch):
    import keras

    def offline(*a, **k):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    import keras.src.applications.mobilenet_v2 as mv2

    monkeypatch.setattr(mv2.file_utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError, match="offline"):
        build_model(ModelConfig(backbone="mobilenetv2", weights="imagenet"), 96)


def test_weights_from_a_local_file(tmp_path):
    import keras

    source = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
    source.save_weights(tmp_path / "mnv2.weights.h5")
    model = build_model(ModelConfig(backbone="mobilenetv2", weights=str(tmp_path / "mnv2.weights.h5")), 96)
    np.testing.assert_array_equal(model.get_layer("Conv1").get_weights()[0], source.get_layer("Conv1").get_weights()[0])
    with pytest.raises(WeightsUnavailableError, match="no such file"):
        build_model(ModelConfig(backbone="mobilenetv2", weights=str(tmp_path / "missing.h5")), 96)


def test_save_and_safe_load_roundtrip(tmp_path):
    from cxr_core.model.keras_import import load_keras_model

    model = build_model(ModelConfig(backbone="cxrnet", filters=[8, 16]), 32)
    model.save(tmp_path / "m.keras")
    loaded = load_keras_model(tmp_path / "m.keras")
    x = np.random.rand(2, 32, 32, 1).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(loaded(x)), atol=1e-6)
