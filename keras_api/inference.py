"""Inference with Keras: feature extraction (P3.27-P3.29), predict and evaluate (P3.38)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_pipeline.errors import DataError
from data_pipeline.features import write_feature_shards
from common.predict import PredictorBase
from data_pipeline.shards import load_manifest
from common.weights_source import KERAS_CACHE_VGG16

from .weights import load_model_file


def extract_features(manifest_path: str, out_dir: str | Path, weights: str | None = "imagenet",
                     batch_size: int = 32) -> dict:
    """Run the frozen VGG16 base over every shard -> float32 (7, 7, 512) feature shards + manifest.

    Pixels are fed in [0, 1], the input the end-to-end model is trained on.
    """
    from .vgg16_transfer import vgg16_base
    manifest = load_manifest(manifest_path)
    base = vgg16_base(tuple(manifest["image_shape"]), weights)
    source = {None: "random", "none": "random", "imagenet": str(KERAS_CACHE_VGG16)}.get(weights, str(weights))
    return write_feature_shards(manifest_path, out_dir, lambda x: np.asarray(base(x, training=False)),
                                {"manifest": manifest["_path"], "api": "keras", "weights": source}, batch_size)


class Predictor(PredictorBase):
    """A trained run's `final.keras` (or `best.keras`), loaded in safe mode."""

    def __init__(self, run_dir: str | Path, checkpoint: str = "final") -> None:
        self._load_run(run_dir, "keras")
        path = Path(run_dir) / f"{checkpoint}.keras"
        if not path.exists():
            raise DataError(f"{path}: no saved model (did training finish?)")
        self.model = load_model_file(path)
        if self.model.output_shape[-1] != len(self.run["class_names"]):
            raise DataError(f"{path}: {self.model.output_shape[-1]} outputs, the run has "
                            f"{len(self.run['class_names'])} classes")

    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(batch, training=False), np.float32)
