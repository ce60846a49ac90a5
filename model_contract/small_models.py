"""The small models of the overhead study, as both APIs build them: where compute vanishes, a
step's cost is the API's own (dispatch, input handling, update bookkeeping).

- ``mlp``: the MNIST-style network printed beside the "2.5x" claim: (28, 28, 1) -> flatten ->
  `dense` 128 relu -> `prediction` 10 logits.
- ``trivial``: in the spirit of tf_cnn_benchmarks' `trivial` model: (28, 28, 1) -> flatten ->
  `dense` 1 -> `prediction` 10 logits; almost no arithmetic at any batch size.
- ``embedding``: the model behind the "2.5x" figure (keras-team/keras#7818), scaled to this
  machine: 50 int32 token ids -> `embedding` (100,000 x 512) -> `dense` 256 sigmoid per token ->
  `prediction` 1,000 logits per token (B, 50, 1000); one label per token. Its embedding
  gradient touches at most 50 x B rows: applied sparsely or densified, it is the mechanism.
"""
from __future__ import annotations

from dataclasses import dataclass

from plumbing.errors import UserError


@dataclass(frozen=True)
class SmallModel:
    input_shape: tuple          # one sample
    input_dtype: str            # "float32" or "int32" (token ids)
    num_classes: int
    label_shape: tuple          # one sample's labels: () or (tokens,)
    hidden: int                 # units of `dense`
    activation: str | None      # of `dense`
    vocabulary: int = 0         # rows of `embedding` (embedding model only)
    embedding_dim: int = 0

    @property
    def embeds(self) -> bool:
        """Token ids through an `embedding` table, whose gradient touches only the rows looked
        up (applied sparsely or densified: the update the model exists to measure)."""
        return self.vocabulary > 0


SMALL_MODELS = {
    "mlp": SmallModel((28, 28, 1), "float32", 10, (), 128, "relu"),
    "trivial": SmallModel((28, 28, 1), "float32", 10, (), 1, None),
    "embedding": SmallModel((50,), "int32", 1000, (50,), 256, "sigmoid", vocabulary=100_000, embedding_dim=512),
}


def small_model(name: str) -> SmallModel:
    if name not in SMALL_MODELS:
        raise UserError(f"unknown small model {name!r}: expected one of {', '.join(SMALL_MODELS)}")
    return SMALL_MODELS[name]


def check_small_input(name: str, shape: tuple, dtype: str) -> None:
    """UserError unless one sample of `shape` and `dtype` feeds small model `name`."""
    spec = small_model(name)
    if tuple(shape) != spec.input_shape or dtype != spec.input_dtype:
        raise UserError(f"{name}: input must be {spec.input_dtype} samples of shape {spec.input_shape}, "
                        f"got {dtype} {tuple(shape)}")


def input_signature(model: str) -> tuple[str, tuple]:
    """(input dtype, one sample's label shape) of any model: images and one label per sample,
    except where a small model says otherwise."""
    spec = SMALL_MODELS.get(model)
    return (spec.input_dtype, spec.label_shape) if spec else ("float32", ())
