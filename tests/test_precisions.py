"""The precision table: both APIs build what a policy's record says."""
from __future__ import annotations

import keras
import pytest
import tensorflow as tf

from benchmarks.measure.timing import graph_compute_dtypes, model_compute_dtypes
from model_contract.precisions import PRECISIONS
from model_contract.small_models import SMALL_MODELS
from plumbing.errors import UserError


def _graph_dtypes(precision: str) -> tuple[list[str], str]:
    """The MLP's graph in `precision` -> (its matrix products' dtypes, its logits' dtype)."""
    from graph_api.model import build_model
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, (None,) + SMALL_MODELS["mlp"].input_shape)
        logits = build_model("mlp", images, False, 10, precision=precision)
    return graph_compute_dtypes(graph), logits.dtype.name


@pytest.mark.parametrize("precision", PRECISIONS.values(), ids=list(PRECISIONS))
def test_each_api_computes_in_the_records_dtype_with_float32_logits(precision):
    from keras_api.model import build_model
    assert _graph_dtypes(precision.name) == ([precision.compute_dtype], "float32")
    model = build_model("mlp", num_classes=10, precision=precision.name, weights="none")
    assert model_compute_dtypes(model) == [precision.compute_dtype]
    assert model.dtype_policy.name == precision.keras_policy
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the build
    assert model(tf.zeros((1,) + SMALL_MODELS["mlp"].input_shape)).dtype == tf.float32


def test_an_unknown_precision_is_one_error_naming_the_choices():
    from keras_api.model import build_model as keras_model
    message = "unknown precision 'fp16': expected one of fp32, mixed_bfloat16, mixed_float16"
    with pytest.raises(UserError) as err:
        keras_model("mlp", num_classes=10, precision="fp16")
    assert err.value.message == message
    with pytest.raises(UserError) as err:
        _graph_dtypes("fp16")
    assert err.value.message == message
