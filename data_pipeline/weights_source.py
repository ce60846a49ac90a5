"""Where the VGG16 base's weights come from, decided the same way for both APIs.

"imagenet" means Keras's cache file (this machine cannot download it), a path means that
file, "none" means a random base, announced loudly on stderr.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import DataError

KERAS_CACHE_VGG16 = Path.home() / ".keras" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def resolve_vgg16_weights(weights: str | None) -> Path | None:
    """The weights file to load, or None for a random base; DataError if the file is missing."""
    if weights in (None, "none"):
        print("WARNING: VGG16 base randomly initialised (weights 'none'): its features are not ImageNet's",
              file=sys.stderr)
        return None
    path = KERAS_CACHE_VGG16 if weights == "imagenet" else Path(weights)
    if not path.is_file():
        hint = (" (this machine cannot download it; pass a Keras VGG16 weights file, or 'none')"
                if weights == "imagenet" else "")
        raise DataError(f"{path}: VGG16 weights file not found{hint}")
    return path
