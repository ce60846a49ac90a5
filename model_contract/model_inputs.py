"""What input each model accepts, checked the same way by both APIs (tensors and shards)."""
from __future__ import annotations

from data_pipeline.constants import FEATURE_MODE
from model_contract.image_models import image_model
from plumbing.errors import UserError


def check_input_shape(name: str, input_shape) -> None:
    """UserError if one sample of shape (H, W, C) cannot feed model `name`."""
    if len(input_shape) != 3 or None in tuple(input_shape):
        raise UserError(f"{name}: input must be (batch, height, width, channels) with known sizes, "
                        f"got sample shape {tuple(input_shape)}")
    height, width, channels = (int(v) for v in input_shape)
    spec = image_model(name)
    if spec.features:
        if channels != 512:
            raise UserError(f"{name}: input must be VGG16 features (h, w, 512), got {tuple(input_shape)}")
        return
    if channels != 3:
        raise UserError(f"{name}: input must have 3 channels (RGB), got {channels}")
    if height != width or height < 32 or height % spec.side_multiple:
        need = f"a multiple of {spec.side_multiple}" if spec.side_multiple > 1 else "at least 32"
        raise UserError(f"{name}: input must be square and {need} pixels, got {height}x{width}")


def check_manifest_input(name: str, manifest: dict) -> None:
    """UserError if the shards of `manifest` cannot feed model `name`: the head trains on
    feature shards (`extract-features`), the other models on images."""
    features = image_model(name).features
    if features and manifest["image_mode"] != FEATURE_MODE:
        raise UserError(f"{manifest['_path']}: vgg16_head trains on feature shards (extract-features), "
                        f"not {manifest['image_mode']!r}")
    if not features and manifest["image_mode"] == FEATURE_MODE:
        raise UserError(f"{manifest['_path']}: {name} trains on image shards; these hold VGG16 features "
                        "(for vgg16_head)")
