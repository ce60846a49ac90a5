"""The image models' table: what each API, the input checks and the harness branch on, as one
record per model (the overhead study's small models have theirs: `model_contract.small_models`)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageModel:
    name: str
    features: bool = False          # reads VGG16 feature maps (h, w, 512), not RGB images
    # a VGG16 base whose weights come from a file (`model_contract.weights_source`); only Keras 3
    # reads its weight files and builds its preprocessing
    pretrained_base: bool = False
    batch_norm: bool = False        # has batch normalisation (graph_api's bn modes apply)
    side_multiple: int = 1          # an image's side must be a multiple of this (VGG16's 5 poolings)


VGG16_TRANSFER = ImageModel("vgg16_transfer", pretrained_base=True, side_multiple=32)
RESNET50 = ImageModel("resnet50", batch_norm=True)
VGG16_HEAD = ImageModel("vgg16_head", features=True)

IMAGE_MODELS: dict[str, ImageModel] = {m.name: m for m in (RESNET50, VGG16_TRANSFER, VGG16_HEAD)}


def image_model(name: str) -> ImageModel:
    """The record of model `name`; any other model (a small one) reads as an image model with
    no features input, base or batch norm."""
    return IMAGE_MODELS.get(name, ImageModel(name))


def has_pretrained_base(model: str) -> bool:
    """Whether model `model` (any model's name) has a pretrained VGG16 base to load."""
    return image_model(model).pretrained_base
