import numpy as np
import pytest

from data_pipeline.constants import CHANNELS
from data_pipeline.images import (
    RGB_MAP,
    convert_tensor_to_rgb,
    load_channel,
    resize,
    site_to_sample,
)
from data_pipeline.png import encode_png8
from plumbing.errors import UserError


def rxrx1_utils_reference(t, vmax=255):
    """rxrx1-utils rxrx/io.py convert_tensor_to_rgb, verbatim arithmetic (the oracle)."""
    colored = []
    for i, ch in enumerate(CHANNELS):
        low, high = RGB_MAP[ch]["range"]
        x = (t[:, :, i] / vmax) / ((high - low) / 255) + low / 255
        x = np.where(x > 1.0, 1.0, x)
        colored.append(np.array(np.outer(x, np.array(RGB_MAP[ch]["rgb"])).reshape(t.shape[0], t.shape[1], 3),
                                dtype=int))
    im = np.array(np.array(colored).sum(axis=0), dtype=int)
    return np.where(im > 255, 255, im)


def test_composite_matches_rxrx1_utils_exactly():
    rng = np.random.default_rng(0)
    site = rng.integers(0, 256, (96, 96, 6), dtype=np.uint8)
    site[:8] = 255  # saturation path
    ours = convert_tensor_to_rgb(site)
    assert ours.dtype == np.uint8 and ours.shape == (96, 96, 3)
    np.testing.assert_array_equal(ours, rxrx1_utils_reference(site))


def test_resize_matches_tf_image_resize():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    expected = tf.image.resize(image.astype(np.float32), (56, 56)).numpy()
    ours = resize(image, 56)
    assert ours.dtype == np.uint8 and ours.shape == (56, 56, 3)
    assert np.abs(ours - expected).max() <= 0.505  # rounding, plus float32 summation order


def test_sample_modes_have_the_right_shapes():
    site = np.zeros((64, 64, 6), np.uint8)
    assert site_to_sample(site, "rgb224", 32).shape == (32, 32, 3)
    assert site_to_sample(site, "raw6", 32).shape == (32, 32, 6)
    with pytest.raises(UserError, match="image mode"):
        site_to_sample(site, "rgb", 32)


def test_png_encoder_round_trips(tmp_path):
    image = np.random.default_rng(2).integers(0, 256, (40, 40), dtype=np.uint8)
    path = tmp_path / "x.png"
    path.write_bytes(encode_png8(image))
    np.testing.assert_array_equal(load_channel(path), image)


def test_bad_pngs_are_named(tmp_path):
    good = encode_png8(np.full((64, 64), 7, np.uint8))
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.png").write_bytes(b"not a png at all")
    (tmp_path / "small.png").write_bytes(encode_png8(np.zeros((32, 32), np.uint8)))
    for name in ("truncated.png", "garbage.png"):
        with pytest.raises(UserError, match=name):
            load_channel(tmp_path / name)
    with pytest.raises(UserError, match="small.png.*32x32, expected 64x64"):
        load_channel(tmp_path / "small.png", expected_size=64)
    with pytest.raises(UserError, match="missing.png: image not found"):
        load_channel(tmp_path / "missing.png")
