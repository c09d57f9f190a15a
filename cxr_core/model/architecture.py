"""Model builders: a small from-scratch CNN ("cxrnet") and Keras' transfer backbones.

All models share one contract, which prediction, Grad-CAM and training rely on:
- input: `(size, size, 1)` float32 grayscale in [0, 1], layer name "image";
- the last convolutional feature map is the output of the layer named `CAM_LAYER`;
- the head is global-average-pooling -> dropout -> [dense -> dropout] -> linear layer `LOGITS_LAYER`
  -> softmax `OUTPUT_LAYER`. With no extra dense layer, Grad-CAM equals CAM (see gradcam.py);
- one flat functional graph (backbones are built on our input tensor, not nested as a layer),
  which Keras 3 Grad-CAM needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import BACKBONES, ModelConfig
from ..errors import ConfigError, ModelError, WeightsUnavailableError
from .folder import ModelFolder
from .keras_import import import_keras

CAM_LAYER = "cam_features"
LOGITS_LAYER = "logits"
POOL_LAYER = "gap"  # the pooled last-conv features: the OOD detector's input
OUTPUT_LAYER = "predictions"
INPUT_LAYER = "image"

# Per-backbone: Keras application name, pixel scaling of [0,1] RGB to what the ImageNet weights
# expect (as a Normalization layer: serialisable and loadable with safe_mode=True), and the layer
# whose output is the last convolutional feature map.
_IMAGENET_MEAN = [0.485, 0.456, 0.406]
_IMAGENET_VAR = [0.229**2, 0.224**2, 0.225**2]
_BACKBONES: dict[str, dict[str, Any]] = {
    # ResNet50 "caffe" mode: BGR, mean-subtracted in 0-255. Channels are identical (gray), so only
    # the mean matters; expressed as Normalization on [0,1] input.
    "resnet50": {"app": "ResNet50", "mean": [103.939 / 255, 116.779 / 255, 123.68 / 255], "var": [1 / 255**2] * 3,
                 "last": "conv5_block3_out"},
    "efficientnetb0": {"app": "EfficientNetB0", "mean": [0.0] * 3, "var": [1 / 255**2] * 3,  # has its own rescaling
                       "last": "top_activation"},
    "mobilenetv2": {"app": "MobileNetV2", "mean": [0.5] * 3, "var": [0.25] * 3, "last": "out_relu"},
    "densenet121": {"app": "DenseNet121", "mean": _IMAGENET_MEAN, "var": _IMAGENET_VAR, "last": "relu"},
}


def build_model(config: ModelConfig, image_size: int) -> Any:
    """Build the model described by `config` for square `image_size` inputs (not compiled)."""
    config.validate()
    if config.backbone not in BACKBONES:
        raise ConfigError(f"Unknown backbone {config.backbone!r}; expected one of {BACKBONES}.")
    keras = _keras()
    inputs = keras.Input((image_size, image_size, 1), name=INPUT_LAYER)
    if config.backbone == "cxrnet":
        features = _cxrnet_features(inputs, config.filters)
    else:
        features = _application_features(inputs, config, image_size)
    model = keras.Model(inputs, _head(features, config), name=f"{config.backbone}_{config.num_classes}class")
    _set_trainable(_feature_layers(model), config)
    if config.init_from:
        load_weights_from(model, config.init_from)
    return model


def has_linear_head(model: Any) -> bool:
    """True when logits = Dense(GAP(cam_features)) with nothing but dropout between (Grad-CAM = CAM)."""
    names = [layer.name for layer in model.layers]
    try:
        tail = names[names.index(CAM_LAYER) + 1:names.index(LOGITS_LAYER)]
    except ValueError:
        return False
    return tail == [POOL_LAYER, "head_dropout"]


def logit_function(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """batch (n, s, s, 1) -> float64 logits (n, classes), in inference mode."""
    keras = _keras()
    logit_model = keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output)
    return lambda x: np.asarray(logit_model.predict_on_batch(np.asarray(x, np.float32)), np.float64)


def predict_logits(model: Any, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    keras = _keras()
    logit_model = keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output)
    return np.asarray(logit_model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0), np.float64)


def pooled_features(model: Any, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The pooled last-conv features (the "gap" layer) that the OOD detector models."""
    keras = _keras()
    feat_model = keras.Model(model.inputs, model.get_layer(POOL_LAYER).output)
    return np.asarray(feat_model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0))


def merge_members(members: list[Any], name: str = "ensemble") -> Any:
    """One model whose logits are the mean of the members' logits, with the same contract as a single one.

    Each member's trunk (input to its CAM layer) is nested as `member<i>`; their feature maps are
    concatenated as `CAM_LAYER`, and one linear layer holds the stacked member kernels / M and the
    mean bias. So logits = mean_i(W_i . GAP(F_i) + b_i) exactly, and the CAM of the merged model is the
    mean of the members' CAMs: Grad-CAM averaged across members, from one forward pass.
    """
    if not members:
        raise ModelError("An ensemble needs at least one member.")
    if not all(has_linear_head(m) for m in members):
        raise ModelError("Only members with a linear head (model.dense_units = 0) can be merged.")
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(tuple(members[0].inputs[0].shape[1:]), name=INPUT_LAYER)
    features, kernels, biases = [], [], []
    for i, member in enumerate(members):
        trunk = keras.Model(member.inputs, member.get_layer(CAM_LAYER).output, name=f"member{i + 1}")
        features.append(trunk(inputs))
        kernel, bias = member.get_layer(LOGITS_LAYER).get_weights()
        kernels.append(kernel)
        biases.append(bias)
    x = layers.Concatenate(name=CAM_LAYER)(features) if len(features) > 1 else layers.Activation("linear", name=CAM_LAYER)(features[0])
    x = layers.GlobalAveragePooling2D(name=POOL_LAYER)(x)
    x = layers.Dropout(0.0, name="head_dropout")(x)
    dense = layers.Dense(kernels[0].shape[1], name=LOGITS_LAYER)
    logits = dense(x)
    dense.set_weights([np.concatenate(kernels, axis=0) / len(members), np.mean(biases, axis=0)])
    outputs = layers.Softmax(name=OUTPUT_LAYER, dtype="float32")(logits)
    return keras.Model(inputs, outputs, name=name)


def all_layers(model: Any) -> list[Any]:
    """Every layer of `model`, depth first, the layers of nested models (an ensemble's members) included."""
    out = []
    for layer in model.layers:
        out += [layer, *(all_layers(layer) if hasattr(layer, "layers") else [])]
    return out


def trainable_parameter_count(model: Any) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def load_weights_from(model: Any, path: str) -> None:
    """Copy weights layer by layer (by name) from a saved `.keras` model or `.weights.h5` file."""
    keras = _keras()
    p = Path(path)
    if not p.exists():
        raise ModelError(f"Cannot initialise from {path!r}: the file does not exist.")
    if p.suffix == ".keras" or p.is_dir():
        source = keras.models.load_model(ModelFolder(p).model_file if p.is_dir() else p, compile=False, safe_mode=True)
        copied = 0
        for layer in model.layers:
            try:
                other = source.get_layer(layer.name)
            except ValueError:
                continue
            src = other.get_weights()
            if src and [w.shape for w in src] == [w.shape for w in layer.get_weights()]:
                layer.set_weights(src)
                copied += 1
        if copied == 0:
            raise ModelError(f"No layer of {path!r} matches this model: nothing to initialise from.")
    else:
        model.load_weights(p, skip_mismatch=True)

# --------------------------------------------------------------------------------------------
def _keras() -> Any:

    return import_keras()


def _conv_bn_relu(x: Any, filters: int, name: str, strides: int = 1) -> Any:
    layers = _keras().layers
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _cxrnet_features(inputs: Any, filters: list[int]) -> Any:
    """A VGG-style CNN with batch norm: a strided stem, then per stage two 3x3 convs and a pool.

    BatchNormalization momentum is 0.9, not Keras' 0.99 default, so that the moving statistics used
    at validation catch up within the first epoch when training from scratch.
    """
    layers = _keras().layers
    x = layers.Rescaling(2.0, offset=-1.0, name="scale")(inputs)
    x = _conv_bn_relu(x, filters[0], "stem", strides=2)
    for i, f in enumerate(filters):
        x = _conv_bn_relu(x, f, f"stage{i + 1}a")
        x = _conv_bn_relu(x, f, f"stage{i + 1}b" if i < len(filters) - 1 else CAM_LAYER + "_pre")
        if i < len(filters) - 1:
            x = layers.MaxPooling2D(2, name=f"stage{i + 1}_pool")(x)
    return layers.Activation("linear", name=CAM_LAYER)(x)


def _application_features(inputs: Any, config: ModelConfig, image_size: int) -> tuple[Any, list[Any]]:
    keras = _keras()
    layers = keras.layers
    spec = _BACKBONES[config.backbone]
    rgb = layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    x = layers.Normalization(mean=spec["mean"], variance=spec["var"], name="backbone_preprocess")(rgb)
    weights = _resolve_weights(config.weights)
    app = getattr(keras.applications, spec["app"])
    try:
        base = app(include_top=False, weights=weights if weights == "imagenet" else None, input_tensor=x)
    except Exception as exc:  # urllib / OSError / ValueError from the download
        if weights == "imagenet":
            raise WeightsUnavailableError(
                f"ImageNet weights for {spec['app']} could not be downloaded ({type(exc).__name__}: {exc}). "
                "This machine may be offline: put the weights file in ~/.keras/models/, pass its path as "
                "model.weights, or train from scratch with model.weights = \"none\"."
            ) from None
        raise
    if weights not in (None, "imagenet"):
        try:
            base.load_weights(weights, skip_mismatch=True)
        except Exception as exc:
            raise WeightsUnavailableError(f"Cannot load backbone weights from {weights!r}: {exc}") from None
    if config.weights == "none":
        for layer in base.layers:  # from scratch: faster-adapting BN statistics (see module docstring)
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = 0.9
    return layers.Activation("linear", name=CAM_LAYER)(base.get_layer(spec["last"]).output)

_INPUT_ADAPTERS = ("gray_to_rgb", "backbone_preprocess", "scale")


def _feature_layers(model: Any) -> list[Any]:
    """The feature extractor's layers in order (input adapters excluded), up to the CAM layer.

    For a Keras application this is the application's own layer list without its input layer, so
    `freeze_until = "143"` means what it means on keras.applications.ResNet50.
    """
    layers = _keras().layers
    out = []
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer) or layer.name in _INPUT_ADAPTERS:
            continue
        out.append(layer)
        if layer.name == CAM_LAYER:
            break
    return out


def _resolve_weights(weights: str) -> str | None:
    if weights == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    if not Path(weights).is_file():
        raise WeightsUnavailableError(f"model.weights = {weights!r}: no such file. Use \"none\", \"imagenet\" or a path.")
    return weights


def _head(features: Any, config: ModelConfig) -> Any:
    layers = _keras().layers
    x = layers.GlobalAveragePooling2D(name=POOL_LAYER)(features)
    x = layers.Dropout(config.dropout, name="head_dropout")(x)
    if config.dense_units:
        x = layers.Dense(config.dense_units, activation="relu", name="head_dense")(x)
        x = layers.Dropout(config.dropout, name="head_dense_dropout")(x)
    logits = layers.Dense(config.num_classes, name=LOGITS_LAYER)(x)
    return layers.Softmax(name=OUTPUT_LAYER, dtype="float32")(logits)


def _set_trainable(backbone_layers: list[Any], config: ModelConfig) -> None:
    """Freeze the bottom of a transfer backbone: up to a layer (`freeze_until`: a name, or a number of
    layers as in seed 000's "freeze up to layer 144") or all but the top N layers (`trainable_layers`)."""
    if config.freeze_until.isdigit():  # counted as in the standalone application, whose input layer is layer 0
        cut = min(max(0, int(config.freeze_until) - 1), len(backbone_layers))
    elif config.freeze_until:
        names = [layer.name for layer in backbone_layers]
        if config.freeze_until not in names:
            raise ConfigError(f"model.freeze_until = {config.freeze_until!r} is not a layer of {config.backbone}.")
        cut = names.index(config.freeze_until) + 1
    elif config.trainable_layers == -1:
        cut = 0
    else:
        cut = max(0, len(backbone_layers) - config.trainable_layers)
    for i, layer in enumerate(backbone_layers):
        layer.trainable = i >= cut  # a frozen BatchNormalization also runs in inference mode (Keras 3)
