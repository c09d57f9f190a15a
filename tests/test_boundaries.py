"""Every threshold constant in the code, tested on each side of its boundary: the intended-use rules (colour,
uniformity), the image guards and the population check, the decision threshold and the subtype margin, the heatmap's
display scale, the image size limits, the validation gate and the site point's policy bounds. (The ages, the site
point's rules and the decision through the Predictor are in test_controlled.py.)"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cxr_core.errors import CXRError, InputImageError

from testkit import controlled as C

below = lambda x: float(np.nextafter(x, -np.inf))  # noqa: E731
above = lambda x: float(np.nextafter(x, np.inf))  # noqa: E731


def _image(pixels, **metadata):
    from cxr_core.inputs.imaging import LoadedImage

    return LoadedImage(pixels=np.asarray(pixels, np.float32), format="PNG", metadata=metadata)


def test_colourfulness_at_the_limit_is_assessed_and_above_it_refused():
    from cxr_core.safety.intended_use import MAX_COLOURFULNESS, assess

    film = C.film()
    assert assess(_image(film, colourfulness=MAX_COLOURFULNESS)).assessed
    refused = assess(_image(film, colourfulness=above(MAX_COLOURFULNESS)))
    assert not refused.assessed and "colour image" in refused.reasons[0]


@pytest.mark.parametrize("factor,assessed", [(0.98, False), (1.02, True)])
def test_an_almost_uniform_image_either_side_of_the_minimum_spread(factor, assessed):
    from cxr_core.safety.intended_use import MIN_STD, assess

    pixels = np.full((64, 64), 0.5, np.float64)
    pixels[:, ::2] += 2 * MIN_STD * factor  # half the pixels raised: std = MIN_STD * factor
    assert abs(np.std(pixels.astype(np.float32)) / MIN_STD - factor) < 1e-3
    verdict = assess(_image(pixels))
    assert verdict.assessed == assessed
    assert any("almost uniform" in r for r in verdict.reasons) == (not assessed)


def test_each_image_guard_threshold_flags_above_it_and_not_at_it(controlled_predictor):
    from cxr_core.safety.ood import PIXEL_REASON, UNUSUAL_WARNING, VERY_UNUSUAL_WARNING

    det = controlled_predictor.ood
    x = controlled_predictor.preprocess(C.film(C.target(0.3)))
    pooled = controlled_predictor.forward(x[None], heatmaps=False)[2][0]
    pixel, feature = float(det.pixel_scores(x[None, ..., 0])[0]), float(det.feature_scores(pooled[None])[0])
    layout, warnings = det.check(x[..., 0], pooled)
    assert layout.reasons == () and warnings == []  # a film like the guards' own: neither refused nor warned
    # just above and just below each score (float32 pixel scores: a relative step of 1e-6, not one float64 ulp)
    up, down = (lambda v: v * (1 + 1e-6)), (lambda v: v * (1 - 1e-6))
    at = dataclasses.replace(det, pixel_threshold=up(pixel), feature_threshold=up(feature),
                             feature_threshold_strong=up(feature))
    layout, warnings = at.check(x[..., 0], pooled)
    assert layout.reasons == () and warnings == []
    assert dataclasses.replace(det, pixel_threshold=down(pixel)).check(x[..., 0], pooled)[0].reasons == (PIXEL_REASON,)
    unusual = dataclasses.replace(det, feature_threshold=down(feature), feature_threshold_strong=up(feature))
    assert unusual.check(x[..., 0], pooled)[1] == [UNUSUAL_WARNING]
    very = dataclasses.replace(det, feature_threshold=down(feature), feature_threshold_strong=down(feature))
    assert very.check(x[..., 0], pooled)[1] == [VERY_UNUSUAL_WARNING]


def test_the_adult_image_check_flags_above_its_threshold_and_not_at_it(controlled_predictor):
    check = controlled_predictor.adult_check
    x = controlled_predictor.preprocess(C.film(C.target(0.3), adult=True, seed=3))[None]
    score = float(check.scores(x)[0])
    assert score > check.threshold and check.flags(x)[0]  # the adult phantom is flagged by the fitted check
    assert not dataclasses.replace(check, threshold=score * (1 + 1e-6)).flags(x)[0]
    assert dataclasses.replace(check, threshold=score * (1 - 1e-6)).flags(x)[0]


def test_the_decision_threshold_and_the_subtype_margin_at_and_beside_their_values():
    from cxr_core.model.decision import SUBTYPE_UNCERTAIN, decide, stated_subtype, subtype_margin

    probs = np.array([[0.25, 0.5625, 0.1875]])  # binary fractions: P = 0.75, margin = 0.5, both exact
    assert subtype_margin(probs)[0] == 0.5
    assert decide(probs, 0.75)[0] == 1 and decide(probs, above(0.75))[0] == 0
    assert decide(probs[:, [0, 2, 1]], 0.75)[0] == 2  # the likelier subtype, whichever column
    assert stated_subtype(probs[0], 0.5) == "BACTERIAL"
    assert stated_subtype(probs[0], above(0.5)) == SUBTYPE_UNCERTAIN
    assert stated_subtype(probs[0], None) == "BACTERIAL"  # no margin fitted: every subtype stated


def test_the_heatmap_scale_maps_its_value_to_full_colour_and_clips_above():
    from cxr_core.model.gradcam import to_display

    raw = np.array([[[0.0, 0.8, 1.6, 3.2]]], np.float32)
    np.testing.assert_allclose(to_display(raw, 1.6)[0, 0], [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(to_display(raw, None)[0, 0], [0.0, 0.25, 0.5, 1.0])  # no scale: the map's own peak


@pytest.mark.parametrize("side,ok", [(64, True), (63, False)])
def test_the_smallest_side_of_an_image(side, ok):
    from cxr_core.inputs.imaging import load_image

    from testkit.inputs import pil_bytes
    from PIL import Image

    data = pil_bytes(Image.fromarray((np.random.default_rng(0).random((side, 80)) * 255).astype(np.uint8)), "PNG")
    if ok:
        assert load_image(data).pixels.shape == (side, 80)
    else:
        with pytest.raises(InputImageError, match="too small"):
            load_image(data)


@pytest.mark.parametrize("width,warns", [(192, False), (193, True)])
def test_the_aspect_ratio_warning_starts_above_three(width, warns):
    from cxr_core.inputs.imaging import load_image

    from testkit.inputs import pil_bytes
    from PIL import Image

    data = pil_bytes(Image.fromarray((np.random.default_rng(0).random((64, width)) * 255).astype(np.uint8)), "PNG")
    assert any("Unusual shape" in w for w in load_image(data).warnings) == warns


def test_the_largest_image_a_header_may_claim():
    from cxr_core.inputs.imaging import MAX_PIXELS, load_image

    from testkit.inputs import png_with_size

    with pytest.raises(InputImageError) as at_limit:  # decoded (and found truncated), not refused by its size
        load_image(png_with_size(MAX_PIXELS // 10, 10))
    assert "larger than any radiograph" not in str(at_limit.value)
    with pytest.raises(InputImageError, match="larger than any radiograph"):
        load_image(png_with_size(MAX_PIXELS // 10 + 1, 10))


@pytest.mark.parametrize("auc,passed", [(0.9, True), (below(0.9), False)])
def test_the_validation_gate_passes_at_its_auc_and_not_below(controlled_model_dir, tmp_path, auc, passed):
    from cxr_core.model.folder import ModelFolder
    from train.pipeline import register_if_passed

    from tests.conftest import tiny_config

    folder = C.variant(controlled_model_dir, tmp_path / "model", internal_validation={"binary": {"auc": auc}})
    config = tiny_config(tmp_path, train={"min_val_auc_to_register": 0.9})
    _, ok = register_if_passed(ModelFolder(folder).card(), folder, config, None, False, False, lambda s: None)
    assert ok == passed and ModelFolder(folder).card().passed_gate == passed


@pytest.mark.parametrize("min_per_class,floor,valid", [(1, 0.9, True), (0, 0.9, False), (50, above(0.0), True),
                                                       (50, 0.0, False), (50, below(1.0), True), (50, 1.0, False)])
def test_the_site_point_policy_bounds(min_per_class, floor, valid):
    from cxr_core.settings import SitePointPolicy

    if valid:
        SitePointPolicy(min_per_class, floor)
    else:
        with pytest.raises(CXRError):
            SitePointPolicy(min_per_class, floor)


@pytest.mark.parametrize("threshold,valid", [(above(0.0), True), (0.0, False), (below(1.0), True), (1.0, False)])
def test_an_operating_threshold_lies_strictly_between_zero_and_one(threshold, valid):
    from cxr_core.model.operating_point import OperatingPoint

    if valid:
        assert OperatingPoint(threshold).threshold == threshold
    else:
        with pytest.raises(CXRError):
            OperatingPoint(threshold)
