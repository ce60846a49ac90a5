"""The overhead study's small models (`model_contract.small_models`) as TF1 graphs, under the same
naming contract as the big ones (`<keras layer>/<weight>`)."""
from __future__ import annotations

import tensorflow as tf

from graph_api.layers import dense, embedding, flatten
from model_contract.small_models import check_small_input, small_model


def _per_token_dense(x: tf.Tensor, units: int, name: str, activation: str | None = None) -> tf.Tensor:
    """Keras Dense on (B, T, F): the same kernel for every token, (B, T, units)."""
    tokens, features = int(x.shape[1]), int(x.shape[2])
    y = dense(tf.reshape(x, [-1, features]), units, name, activation=activation)
    return tf.reshape(y, [-1, tokens, units])


def build_small_model(name: str, inputs: tf.Tensor, num_classes: int | None = None,
                      compute_dtype: tf.DType = tf.float32) -> tf.Tensor:
    """Small model `name` on `inputs` -> float32 logits: (B, classes), or (B, tokens, classes)
    for ``embedding``. ``compute_dtype``: float32, or bfloat16/float16 for mixed precision."""
    spec = small_model(name)
    check_small_input(name, tuple(inputs.shape[1:]), inputs.dtype.name)
    classes = num_classes or spec.num_classes
    if spec.embeds:
        x = tf.cast(embedding(inputs, spec.vocabulary, spec.embedding_dim, "embedding"), compute_dtype)
        x = _per_token_dense(x, spec.hidden, "dense", activation=spec.activation)
        logits = _per_token_dense(x, classes, "prediction")
    else:
        x = flatten(tf.cast(inputs, compute_dtype), "flatten")
        x = dense(x, spec.hidden, "dense", activation=spec.activation)
        logits = dense(x, classes, "prediction")
    return tf.cast(logits, tf.float32)
