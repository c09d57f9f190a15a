"""`Predictor.score_many`, the batch path of evaluation and the stress suite: the same probabilities as the
interactive `predict`, at full precision, without computing a heatmap."""

import cv2
import numpy as np
import pytest

from cxr_core import CLASSES
from testkit.synthetic import phantom_cxr


@pytest.fixture(scope="module")
def films() -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(5)
    return [(f"film{i}.png", cv2.imencode(".png", (phantom_cxr(64, rng, i % 3) * 255).astype(np.uint8))[1].tobytes())
            for i in range(5)]


def test_score_many_gives_predicts_probabilities_without_a_heatmap(tiny_predictor, films, monkeypatch):
    decoded = [d for batch in tiny_predictor.decode_many(films, batch_size=2) for d in batch]
    assert [d.name for d in decoded] == [name for name, _ in films] and all(d.error is None for d in decoded)
    x = np.stack([d.model_input for d in decoded])
    with_maps = tiny_predictor.forward(x)[0]  # the heatmap path's probabilities, unrounded

    def no_heatmaps(batch):
        raise AssertionError("score_many ran the heatmap graph")

    monkeypatch.setattr(tiny_predictor, "_forward", no_heatmaps)
    scores = tiny_predictor.score_many(x, batch_size=2)  # batches of 2, 2 and 1
    assert scores.probabilities.shape == (5, 3) and scores.logits.shape == (5, tiny_predictor.num_classes)
    np.testing.assert_allclose(scores.probabilities, with_maps, rtol=0, atol=1e-6)
    np.testing.assert_allclose(scores.probabilities, tiny_predictor.score_many(x).probabilities, rtol=0, atol=1e-6)
    monkeypatch.undo()
    for (name, data), p in zip(films, scores.probabilities):
        reported = tiny_predictor.predict(data, name=name).class_probabilities  # rounded to 6 decimals
        np.testing.assert_allclose([reported[c] for c in CLASSES], p, rtol=0, atol=6e-7)
    assert len(set(np.round(scores.probabilities[:, 0], 4))) > 1  # the films differ: not a constant output


def test_an_unreadable_input_is_decoded_as_its_error_and_the_others_still_are(tiny_predictor, films):
    decoded = [d for batch in tiny_predictor.decode_many([films[0], ("broken.png", b"not an image")]) for d in batch]
    assert decoded[0].error is None and decoded[1].model_input is None and decoded[1].error
    assert tiny_predictor.score_many(np.zeros((0, *decoded[0].model_input.shape), np.float32)).probabilities.shape == (0, 3)
