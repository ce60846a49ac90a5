"""RxRx1 data pipeline: metadata, images, synthetic RxRx1, HDF5 shards, one tf.data input.

`make_dataset` imports TensorFlow on first use only, so the command-line tools and the
shard-building worker processes start quickly.
"""
from __future__ import annotations

__all__ = ["make_dataset", "num_batches"]


def __getattr__(name: str):
    if name in ("make_dataset", "num_batches"):
        from data_pipeline import dataset  # imports TensorFlow: on first use only
        return getattr(dataset, name)
    raise AttributeError(f"module 'data_pipeline' has no attribute {name!r}")
