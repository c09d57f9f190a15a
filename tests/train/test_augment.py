"""Training augmentation: the collimation-band and burned-in-text layers, on tiny batches."""

from __future__ import annotations

import numpy as np
import pytest

from train.augment import RandomBands, RandomBurnedInText, build_augmenter, text_masks
from cxr_core.config import AugmentConfig, config_from_dict
from cxr_core.errors import ConfigError


def _batch(n: int = 8, size: int = 48) -> np.ndarray:
    return np.full((n, size, size, 1), 0.5, np.float32)


def test_bands_only_touch_the_edges_and_are_black_or_white():
    out = np.asarray(RandomBands(rate=1.0, max_fraction=0.2, seed=3)(_batch(32), training=True))
    changed = out != 0.5
    assert changed.any(), "rate 1 must put bands on some images"
    assert set(np.unique(out[changed])) <= {0.0, 1.0}
    assert not changed[:, 12:36, 12:36].any(), "bands stay within 20 % of each side"


def test_text_burns_bright_strokes_into_some_images_and_nothing_when_off():
    x = _batch(32)
    out = np.asarray(RandomBurnedInText(rate=1.0, bank_size=8, seed=1)(x, training=True))
    assert out.shape == x.shape and (out >= x).all() and out.max() <= 1.0
    assert (out > 0.7).any()
    off = np.asarray(RandomBurnedInText(rate=0.0, bank_size=8, seed=1)(x, training=True))
    np.testing.assert_array_equal(off, x)
    np.testing.assert_array_equal(np.asarray(RandomBands(1.0)(x, training=False)), x)


def test_text_masks_are_reproducible_in_range_and_mostly_empty():
    a, b = text_masks(64, 6, seed=5), text_masks(64, 6, seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (6, 64, 64) and 0.0 <= a.min() and a.max() <= 1.0
    assert 0.0 < (a > 0).mean() < 0.2


def test_the_augmenter_includes_the_new_layers_only_when_asked():
    names = lambda cfg: [type(layer).__name__ for layer in build_augmenter(cfg).layers]  # noqa: E731
    assert "RandomBands" not in names(AugmentConfig()) and "RandomBurnedInText" not in names(AugmentConfig())
    with_both = names(AugmentConfig(borders=0.3, burned_in_text=0.3))
    assert with_both[-2:] == ["RandomBands", "RandomBurnedInText"]
    assert build_augmenter(AugmentConfig(strength=0.0, borders=0.3)) is None


@pytest.mark.parametrize("key, value", [("borders", 1.5), ("burned_in_text", -0.1)])
def test_bad_probabilities_are_refused_quoting_the_value(key, value):
    with pytest.raises(ConfigError, match=str(value)):
        config_from_dict({"augment": {key: value}})
