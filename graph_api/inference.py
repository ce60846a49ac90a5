"""Inference with the graph: feature extraction (P3.27-P3.29), predict and evaluate (P3.38)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from api_runs.predict import PredictorBase
from data_pipeline.features import write_feature_shards
from data_pipeline.shards import load_manifest
from graph_api.model import build_model, check_data_format_runs, check_input, preprocess
from graph_api.vgg16_transfer import vgg16_base
from graph_api.weights import load_keras_weights, saved_checkpoints, verify_checkpoint
from model_contract.weights_source import base_preprocessing, resolve_vgg16_weights
from plumbing.errors import UserError

v1 = tf.compat.v1


def extract_features(manifest_path: str, out_dir: str | Path, weights: str | None = "imagenet",
                     batch_size: int = 32) -> dict:
    """Run the frozen VGG16 base (in a Session) over every shard -> float32 feature shards + manifest.

    The base sees what the end-to-end model's base sees: for pretrained weights the caffe
    transform of the [0, 1] pixels (`preprocess`), for a random base the pixels as stored.
    """
    manifest = load_manifest(manifest_path)
    weights_path = resolve_vgg16_weights(weights)
    preprocessing = base_preprocessing(weights_path)
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, (None,) + tuple(manifest["image_shape"]), name="images")
        check_input("vgg16_transfer", images)
        features = vgg16_base(preprocess(images, preprocessing))
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
        if weights_path is not None:
            load_keras_weights(session, v1.global_variables(), weights_path)
    with session:
        return write_feature_shards(manifest_path, out_dir, lambda x: session.run(features, {images: x}),
                                    {"manifest": manifest["_path"], "api": "graph",
                                     "weights": str(weights_path) if weights_path else "random",
                                     "preprocessing": preprocessing}, batch_size)


class Predictor(PredictorBase):
    """A trained run restored into an inference graph (eval tower only)."""

    def __init__(self, run_dir: str | Path, checkpoint: str = "final") -> None:
        config = self._load_run(run_dir, "graph")["graph_config"]
        found = saved_checkpoints(Path(run_dir) / checkpoint)
        if not found:
            raise UserError(f"{Path(run_dir) / checkpoint}: no checkpoint (did training finish?)")
        ckpt = found[0]
        check_data_format_runs(config["data_format"], str(Path(run_dir) / "run_config.json"))
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.images = v1.placeholder(tf.float32, (None,) + tuple(self.run["image_shape"]), name="images")
            self.logits = build_model(config["model"], self.images, False, len(self.run["class_names"]),
                                 bn_mode=config["bn_mode"], data_format=config["data_format"],
                                 precision=config["precision"], preprocessing=config["preprocessing"])
            variables = v1.global_variables()
            verify_checkpoint(ckpt, variables)
            self.session = v1.Session(graph=self.graph)
            v1.train.Saver(variables).restore(self.session, ckpt)

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self.logits, {self.images: batch})

    def close(self) -> None:
        self.session.close()
