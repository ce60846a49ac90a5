"""Inference with Keras: feature extraction (P3.27-P3.29), predict and evaluate (P3.38)."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from api_runs.predict import PredictorBase
from data_pipeline.features import write_feature_shards
from data_pipeline.shards import load_manifest
from keras_api.model import input_layers
from keras_api.vgg16_transfer import vgg16_base
from keras_api.weights import load_model_file
from model_contract.weights_source import base_preprocessing, resolve_vgg16_weights
from plumbing.errors import UserError


def extract_features(manifest_path: str, out_dir: str | Path, weights: str | None = "imagenet",
                     batch_size: int = 32) -> dict:
    """Run the frozen VGG16 base over every shard -> float32 (7, 7, 512) feature shards + manifest.

    The base sees what the end-to-end model's base sees: for pretrained weights the caffe
    transform of the [0, 1] pixels (`CaffePreprocessing`), for a random base the pixels as stored.
    """
    manifest = load_manifest(manifest_path)
    path = resolve_vgg16_weights(weights)
    preprocessing = base_preprocessing(path)
    layers = input_layers(preprocessing) + [vgg16_base(tuple(manifest["image_shape"]), str(path) if path else "none")]
    base = keras.Sequential([keras.Input(tuple(manifest["image_shape"])), *layers])
    return write_feature_shards(manifest_path, out_dir, lambda x: np.asarray(base(x, training=False)),
                                {"manifest": manifest["_path"], "api": "keras",
                                 "weights": str(path) if path else "random", "preprocessing": preprocessing},
                                batch_size)


class Predictor(PredictorBase):
    """A trained run's `final.keras` (or `best.keras`), loaded in safe mode."""

    def __init__(self, run_dir: str | Path, checkpoint: str = "final") -> None:
        self._load_run(run_dir, "keras")
        path = Path(run_dir) / f"{checkpoint}.keras"
        if not path.exists():
            raise UserError(f"{path}: no saved model (did training finish?)")
        self.model = load_model_file(path)
        if self.model.output_shape[-1] != len(self.run["class_names"]):
            raise UserError(f"{path}: {self.model.output_shape[-1]} outputs, the run has "
                            f"{len(self.run['class_names'])} classes")

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        output = np.asarray(self.model(batch, training=False), np.float32)
        if self.run.get("outputs") == "logits":
            return output
        # A run saved before the models ended in logits ends in a softmax: log-probabilities are
        # logits of the same softmax.
        return np.log(np.maximum(output, np.finfo(np.float32).tiny))
