"""Site images: load six channels, make the rxrx1-utils RGB composite, resize.

Shapes: a site is (S, S, 6) uint8 (S = 512 for real RxRx1), or (S, S, 3) uint8 in the WILDS
layout, which ships the composite only (S = 256); the composite is (S, S, 3) uint8; samples
written to shards are (size, size, 3) for ``rgb224`` or (size, size, 6) for ``raw6``, uint8.
"""
from __future__ import annotations

import os
from functools import lru_cache

import imageio.v3 as iio
import numpy as np

from data_pipeline.constants import (
    CHANNELS,
    IMAGE_MODE_RAW,
    IMAGE_MODE_RGB,
    IMAGE_MODES,
)
from data_pipeline.layout import LAYOUT_KAGGLE, LAYOUT_WILDS, SiteKey, site_channel_path
from plumbing.errors import UserError

# rxrx1-utils rxrx/io.py RGB_MAP: colour of each channel and the intensity range that is
# stretched to full brightness.
RGB_MAP = {
    1: {"rgb": (19, 0, 249), "range": (0, 51)},
    2: {"rgb": (42, 255, 31), "range": (0, 107)},
    3: {"rgb": (255, 0, 25), "range": (0, 64)},
    4: {"rgb": (45, 255, 252), "range": (0, 191)},
    5: {"rgb": (250, 0, 253), "range": (0, 89)},
    6: {"rgb": (254, 255, 40), "range": (0, 191)},
}


def load_channel(path: str | os.PathLike, expected_size: int | None = None, rgb: bool = False) -> np.ndarray:
    """One 8-bit PNG -> (S, S) uint8 grayscale, or (S, S, 3) with `rgb`; UserError naming the
    file if it is bad."""
    try:
        image = iio.imread(path, plugin="pillow")
    except FileNotFoundError:
        raise UserError(f"{path}: image not found") from None
    except Exception as err:  # decoders raise many types for corrupt data
        raise UserError(f"{path}: corrupt PNG ({type(err).__name__}: {err})") from None
    # Some decoders return a partial image for a truncated file: check what came back.
    wanted_ndim, kind = (3, "8-bit RGB") if rgb else (2, "8-bit grayscale")
    if image.dtype != np.uint8 or image.ndim != wanted_ndim or (rgb and image.shape[2] != 3):
        raise UserError(f"{path}: expected {kind}, got {image.dtype} of shape {image.shape}")
    if image.shape[0] != image.shape[1] or (expected_size and image.shape[0] != expected_size):
        want = f"{expected_size}x{expected_size}" if expected_size else "square"
        raise UserError(f"{path}: image is {image.shape[0]}x{image.shape[1]}, expected {want}")
    return image


def load_site(root: str | os.PathLike, key: SiteKey, expected_size: int | None = None,
              layout: str = LAYOUT_KAGGLE) -> np.ndarray:
    """The six channels of one site stacked -> (S, S, 6) uint8; in the WILDS layout the
    site's RGB composite -> (S, S, 3) uint8."""
    if layout == LAYOUT_WILDS:
        return load_channel(site_channel_path(root, key, None, layout), expected_size, rgb=True)
    channels = [load_channel(site_channel_path(root, key, c, layout), expected_size) for c in CHANNELS]
    sizes = {c.shape for c in channels}
    if len(sizes) != 1:
        raise UserError(f"site {key.sample_id}: channels differ in size {sorted(sizes)}")
    return np.stack(channels, axis=-1)


def site_side(root: str | os.PathLike, key: SiteKey, layout: str = LAYOUT_KAGGLE) -> int:
    """The side in pixels of a site's (first channel's) PNG."""
    channel = None if layout == LAYOUT_WILDS else 1
    return int(load_channel(site_channel_path(root, key, channel, layout), rgb=channel is None).shape[0])


def convert_tensor_to_rgb(site: np.ndarray, channels=CHANNELS, vmax: float = 255) -> np.ndarray:
    """rxrx1-utils' composite: (S, S, C) uint8 -> (S, S, 3) uint8.

    Same arithmetic as rxrx1-utils (float64, each channel's colour contribution truncated
    to int before summing, sum clipped at 255), evaluated once per possible pixel value
    into a lookup table, so results match it exactly at a fraction of the cost.
    """
    total = np.zeros(site.shape[:2], dtype=np.uint64)
    for i, channel in enumerate(channels):
        total += np.take(_packed_channel_lut(channel, float(vmax)), site[:, :, i])
    rgb = np.stack([(total >> np.uint64(16 * k)) & np.uint64(0xFFFF) for k in range(3)], axis=-1)
    return np.minimum(rgb, 255).astype(np.uint8)


@lru_cache(maxsize=64)
def _packed_channel_lut(channel: int, vmax: float) -> np.ndarray:
    """(256,) uint64: each uint8 value's R, G, B contributions (rxrx1-utils arithmetic) packed
    into bits 0-15, 16-31, 32-47, so one gather and one add handle all three components."""
    low, high = RGB_MAP[channel]["range"]
    x = (np.arange(256) / vmax) / ((high - low) / 255) + low / 255
    x = np.where(x > 1.0, 1.0, x)
    parts = np.array(np.outer(x, np.asarray(RGB_MAP[channel]["rgb"])), dtype=int).astype(np.uint64)
    return parts[:, 0] | (parts[:, 1] << np.uint64(16)) | (parts[:, 2] << np.uint64(32))


@lru_cache(maxsize=16)
def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) interpolation weights of tf.image.resize bilinear (half-pixel centres)."""
    scale = in_size / out_size
    centre = (np.arange(out_size) + 0.5) * scale - 0.5
    low = np.floor(centre)
    frac = centre - low
    low_i = np.clip(low, 0, in_size - 1).astype(np.int64)
    high_i = np.clip(low + 1, 0, in_size - 1).astype(np.int64)
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(weights, (rows, low_i), 1.0 - frac)
    np.add.at(weights, (rows, high_i), frac)
    return weights.astype(np.float32)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) uint8 -> (size, size, C) uint8, bilinear as `tf.image.resize` then rounded.

    Computed in numpy as two matrix products (the filter is separable), so shard-building
    worker processes need not import TensorFlow; a test checks it against tf.image.resize.
    """
    if image.shape[0] == size and image.shape[1] == size:
        return image
    rows = _bilinear_matrix(image.shape[0], size)
    cols = _bilinear_matrix(image.shape[1], size)
    height, width, channels = image.shape
    x = image.astype(np.float32).reshape(height, width * channels)
    out = (rows @ x).reshape(size, width, channels)                     # along height
    out = out.transpose(1, 0, 2).reshape(width, size * channels)
    out = (cols @ out).reshape(size, size, channels).transpose(1, 0, 2)  # along width
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def site_to_sample(site: np.ndarray, mode: str, size: int) -> np.ndarray:
    """(S, S, 6) uint8 site (or an (S, S, 3) composite already) -> shard sample: composite RGB
    or raw channels, resized."""
    if mode == IMAGE_MODE_RGB:
        return resize(site if site.shape[-1] == 3 else convert_tensor_to_rgb(site), size)
    if mode == IMAGE_MODE_RAW and site.shape[-1] != 6:
        raise UserError(f"image mode {mode} needs the six channels; this site has {site.shape[-1]} "
                        "(the WILDS layout ships RGB composites only)")
    if mode == IMAGE_MODE_RAW:
        return resize(site, size)
    raise UserError(f"unknown image mode {mode!r}: expected one of {IMAGE_MODES}")


def sample_channels(mode: str) -> int:
    """Channels per sample in an image mode (3 for rgb224, 6 for raw6)."""
    if mode not in IMAGE_MODES:
        raise UserError(f"unknown image mode {mode!r}: expected one of {IMAGE_MODES}")
    return 3 if mode == IMAGE_MODE_RGB else 6


def as_model_input(images: np.ndarray) -> np.ndarray:
    """Stored samples -> float32: uint8 pixels scaled to [0, 1] (what `make_dataset(scale="unit")`
    yields), float samples (cached features) as they are."""
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
