"""Loaders: every supported variant reads correctly; every unreadable input is an InputImageError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxr_core.errors import InputImageError
from cxr_core.inputs.imaging import load_image, sniff_format
from cxr_core.inputs.preprocess import Preprocess, pad_to_square
from cxr_core.model.card import ModelCard

from testkit import inputs

REFERENCE = inputs.gray()


@pytest.mark.parametrize("make, fmt", [
    (inputs.jpeg_gray, "JPEG"), (inputs.jpeg_rgb, "JPEG"), (inputs.jpeg_cmyk, "JPEG"),
    (inputs.png_gray8, "PNG"), (inputs.png_gray16, "PNG"), (inputs.png_rgb, "PNG"),
    (inputs.png_rgba, "PNG"), (inputs.png_palette, "PNG"),
])
def test_raster_variants_decode_to_the_same_picture(make, fmt):
    img = load_image(make())
    assert img.format == fmt
    assert img.pixels.shape == REFERENCE.shape and img.pixels.dtype == np.float32
    assert 0.0 <= img.pixels.min() and img.pixels.max() <= 1.0
    # Same content up to compression and bit-depth rescaling.
    assert np.corrcoef(img.pixels.ravel(), REFERENCE.ravel())[0, 1] > 0.97


def test_exif_orientation_is_applied():
    data, (h, w) = inputs.jpeg_exif_rotated()
    assert load_image(data).pixels.shape == (h, w)


def test_animated_png_uses_first_frame_with_a_warning():
    img = load_image(inputs.png_animated())
    assert any("first frame" in w for w in img.warnings)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, this is a text file" * 20, "not an image"),
    (inputs.jpeg_gray()[:200], "damaged or truncated"),
    (inputs.png_gray8()[:100], "damaged or truncated"),
    (inputs.png_with_size(100_000, 100_000), "decompression bomb"),
    (inputs.pil_bytes(__import__("PIL.Image").Image.new("L", (20, 20)), "PNG"), "too small"),
    (inputs.pil_bytes(__import__("PIL.Image").Image.new("RGB", (80, 80)), "GIF"), "not supported"),
    (inputs.dicom(pixels=False), "no pixel data"),
])
def test_unreadable_inputs_give_a_sentence(data, message):
    with pytest.raises(InputImageError, match=message):
        load_image(data)


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(InputImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputImageError, match="folder"):
        load_image(tmp_path)


def test_format_is_sniffed_not_taken_from_the_extension(tmp_path):
    wrong = tmp_path / "scan.png"
    wrong.write_bytes(inputs.jpeg_gray())
    assert load_image(wrong).format == "JPEG"
    dcm_as_jpg = tmp_path / "x.jpg"
    dcm_as_jpg.write_bytes(inputs.dicom())
    assert load_image(dcm_as_jpg).format == "DICOM"
    assert sniff_format(b"\x00" * 300) is None


# ------------------------------------------------------------------------------------------ DICOM
def test_dicom_window_and_tags_and_identifiers_kept_apart():
    img = load_image(inputs.dicom(window=(2048, 4096)))
    assert img.format == "DICOM"
    assert np.corrcoef(img.pixels.ravel(), REFERENCE.ravel())[0, 1] > 0.99
    assert img.metadata["Modality"] == "DX" and img.metadata["ViewPosition"] == "PA"
    assert "PatientName" not in img.metadata and img.identifiers["PatientName"] == "Doe^Jane"


def test_dicom_monochrome1_is_inverted():
    m2 = load_image(inputs.dicom("MONOCHROME2")).pixels
    m1 = load_image(inputs.dicom("MONOCHROME1")).pixels
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-5)


def test_dicom_narrow_window_clips_like_a_viewer():
    wide = load_image(inputs.dicom(window=(2048, 4096))).pixels
    narrow = load_image(inputs.dicom(window=(1000, 200))).pixels  # most tissue above the window: white
    assert narrow.mean() > wide.mean() + 0.2


def test_dicom_without_window_warns_and_uses_full_range():
    img = load_image(inputs.dicom(window=None))
    assert any("window" in w for w in img.warnings)
    assert img.pixels.min() == 0.0 and img.pixels.max() == 1.0


def test_dicom_modality_lut_is_applied_before_the_window():
    # Stored values x with slope 2, intercept -1000: the window centred on the rescaled mid value.
    img = load_image(inputs.dicom(window=(3095.0, 8190.0), slope=2.0, intercept=-1000.0))
    assert np.corrcoef(img.pixels.ravel(), REFERENCE.ravel())[0, 1] > 0.99


def test_dicom_multiframe_uses_first_frame_with_a_warning():
    img = load_image(inputs.dicom(frames=3))
    assert img.pixels.shape == REFERENCE.shape
    assert any("Multi-frame" in w for w in img.warnings)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"])  # RLE, JPEG 2000 lossless
def test_compressed_dicom_decodes(syntax):
    img = load_image(inputs.dicom(compress=syntax))
    assert np.corrcoef(img.pixels.ravel(), REFERENCE.ravel())[0, 1] > 0.99


def test_compressed_dicom_without_a_decoder_names_the_missing_plugin(monkeypatch):
    import pydicom

    data = inputs.dicom(compress="1.2.840.10008.1.2.4.90")

    def no_decoder(self, *a, **k):
        raise RuntimeError("Unable to decode as there are no pixel data plugins available: missing required dependencies")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoder))
    with pytest.raises(InputImageError, match="pylibjpeg"):
        load_image(data)


# ------------------------------------------------------------------------------------------ properties
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=3000))
def test_random_bytes_never_raise_anything_but_input_error(data):
    try:
        load_image(data)
    except InputImageError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x00" * 128 + b"DICM"]), st.binary(max_size=2000))
def test_random_bodies_behind_valid_magic_bytes_never_crash(magic, body):
    try:
        load_image(magic + body)
    except InputImageError:
        pass


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from(["uint8", "uint16", "float32"]))
def test_random_shapes_and_dtypes_either_load_or_raise_input_error(h, w, dtype):
    rng = np.random.default_rng(h * 1000 + w)
    arr = (rng.random((h, w)) * (255 if dtype == "uint8" else 65535 if dtype == "uint16" else 1)).astype(dtype)
    from PIL import Image

    img = Image.fromarray(arr)
    data = inputs.pil_bytes(img, "PNG" if dtype != "float32" else "TIFF")
    try:
        out = load_image(data)
        assert out.pixels.shape == (h, w) and 0 <= out.pixels.min() <= out.pixels.max() <= 1
    except InputImageError:
        assert dtype == "float32" or min(h, w) < 64


# ------------------------------------------------------------------------------------------ preprocessing
def test_preprocess_shape_range_and_padding():
    rect = np.ones((50, 100), np.float32)
    out = Preprocess(32, intensity="none")(rect)
    assert out.shape == (32, 32, 1) and out.dtype == np.float32
    padded = Preprocess(32, pad=True, intensity="none")(rect)
    assert padded[0, 16, 0] == 0.0 and padded[16, 16, 0] == pytest.approx(1.0)
    assert pad_to_square(rect).shape == (100, 100)


@pytest.mark.parametrize("bad", [{"size": 8}, {"size": 64.0}, {"size": 64, "intensity": "zscore"}])
def test_preprocess_rejects_bad_values_quoting_them(bad):
    with pytest.raises(ValueError, match=repr(list(bad.values())[-1]).replace(".", r"\.")):
        Preprocess(**bad)


def test_preprocess_round_trips_through_the_model_card():
    p = Preprocess(64, pad=True, intensity="percentile")
    card = ModelCard(model_id="m", name="m", version="1", input=p.card_input())
    assert card.preprocess == p and ModelCard.from_dict(card.to_dict()).preprocess == p
    assert Preprocess.from_card_input({"image_size": 64}).intensity == "none"  # cards from before the policy


def test_every_entry_point_shares_one_preprocessing(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(inputs.png_gray8())
    p = Preprocess(40)
    np.testing.assert_array_equal(p.load(path), p(load_image(path.read_bytes()).pixels))


def test_jpeg_and_unwindowed_dicom_of_the_same_pixels_give_the_same_model_input():
    """One intensity path: DICOM without a window is stretched over its own range, JPEG is not;
    the percentile policy makes both the same model input."""
    jpeg = load_image(inputs.jpeg_gray())
    eight_bit = np.round(jpeg.pixels * 255).astype(np.uint16)
    dicom = load_image(inputs.dicom(window=None, array=eight_bit))
    assert not np.allclose(dicom.pixels, jpeg.pixels, atol=0.01)  # the loaders do differ
    p = Preprocess(64)
    np.testing.assert_allclose(p(dicom.pixels), p(jpeg.pixels), atol=1e-5)
