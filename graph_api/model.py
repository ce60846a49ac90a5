"""`build_model`: the entry point that builds either model into the current TF1 graph."""
from __future__ import annotations

import functools

import tensorflow as tf

from data_pipeline.constants import NUM_CLASSES
from graph_api.layers import Training
from graph_api.resnet50 import resnet50
from graph_api.small_models import build_small_model
from graph_api.vgg16_transfer import vgg16_head, vgg16_transfer
from model_contract.batch_norm_modes import KERAS_BN, batch_norm_mode_named
from model_contract.constants import (
    HEAD_DROPOUT,
    IMAGENET_BGR_MEAN,
    PIXEL_RANGE,
    PREPROCESSINGS,
)
from model_contract.model_inputs import check_input_shape
from model_contract.precisions import precision_named
from model_contract.small_models import SMALL_MODELS
from plumbing.errors import UserError

MODELS = {"vgg16_transfer": vgg16_transfer, "resnet50": resnet50, "vgg16_head": vgg16_head}


def preprocess(images: tf.Tensor, preprocessing: str | None) -> tf.Tensor:
    """(B, H, W, 3) [0, 1] RGB -> float32 model input: as is (None), or keras.applications'
    "caffe" transform of the same pixels in [0, 255] (BGR, ImageNet means subtracted)."""
    if preprocessing not in PREPROCESSINGS:
        raise UserError(f"unknown preprocessing {preprocessing!r}: expected one of {PREPROCESSINGS}")
    x = tf.cast(images, tf.float32)
    if preprocessing == "caffe":
        x = x[..., ::-1] * PIXEL_RANGE - tf.constant(IMAGENET_BGR_MEAN, tf.float32)
    return x


def check_input(name: str, images: tf.Tensor) -> None:
    """UserError if `images` cannot feed model `name` (rank, dtype, channels, size)."""
    if images.shape.rank != 4:
        raise UserError(f"{name}: input must be (batch, height, width, channels) with known sizes, "
                        f"got {images.shape}")
    if not images.dtype.is_floating:
        raise UserError(f"{name}: input dtype must be floating point, got {images.dtype.name}")
    check_input_shape(name, tuple(images.shape[1:]))


def build_model(name: str, images: tf.Tensor, training: Training, num_classes: int = NUM_CLASSES, *,
                bn_mode: str = KERAS_BN.name, data_format: str = "NHWC", precision: str = "fp32",
                preprocessing: str | None = None, dropout: float = HEAD_DROPOUT) -> tf.Tensor:
    """Build model `name` on `images` (B, H, W, C) NHWC into the default graph -> float32 logits (B, classes).

    Variables follow the naming contract (`<keras layer>/<weight>`) under the current
    variable scope; build a second tower on the same variables inside
    ``variable_scope(tf.compat.v1.get_variable_scope(), reuse=True)``. `training` is a
    Python bool or a boolean tensor. ``precision``: "fp32", or mixed "mixed_bfloat16" /
    "mixed_float16" (float32 variables, low-precision compute, float32 logits).
    ``data_format="NCHW"`` transposes once at the input (for GPUs). ``preprocessing="caffe"``
    applies keras.applications' VGG16 ImageNet preprocessing to the [0, 1] RGB input (`preprocess`).
    ``dropout`` is the VGG16 head's rate (ResNet50 has no dropout). The overhead study's small
    models (`model_contract.small_models`: mlp, trivial, embedding) build here too.
    """
    compute_dtype = tf.as_dtype(precision_named(precision).compute_dtype)
    if name in SMALL_MODELS:
        return build_small_model(name, images, num_classes, compute_dtype)
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}: expected one of {sorted(MODELS)}")
    batch_norm_mode_named(bn_mode)  # an unknown one: a user error before anything is built
    if data_format not in ("NHWC", "NCHW"):
        raise UserError(f"unknown data format {data_format!r}: expected NHWC or NCHW")
    check_input(name, images)
    x = tf.cast(preprocess(images, preprocessing), compute_dtype)
    if data_format == "NCHW":
        x = tf.transpose(x, [0, 3, 1, 2])
    logits = MODELS[name](x, training, num_classes, bn_mode=bn_mode, data_format=data_format, dropout=dropout)
    return tf.cast(logits, tf.float32)


@functools.cache
def pools_channels_first() -> bool:
    """Whether this process's devices have a max-pool kernel for NCHW data: GPUs and oneDNN's
    CPU kernels do; Eigen's, which TensorFlow uses where it leaves oneDNN off (CPUs without
    AVX-512), do not."""
    graph = tf.Graph()
    with graph.as_default():
        pooled = tf.nn.max_pool2d(tf.zeros([1, 1, 4, 4]), 2, 2, "VALID", data_format="NCHW")
    try:
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(pooled)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        return False
    return True


def check_data_format_runs(data_format: str, source: str) -> None:
    """A UserError naming `source` (the flag or file that asked for it) where `data_format`
    cannot run on this machine, before anything is built or written."""
    if data_format == "NCHW" and not pools_channels_first():
        raise UserError(f"{source}: NCHW runs on a GPU or on oneDNN's CPU kernels (CPUs with AVX-512); "
                        "this machine's TensorFlow pools channels-last data only: use NHWC")
