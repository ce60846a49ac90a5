"""graph_api ResNet50 training throughput: BN mode x precision x input feed.

    python -m benchmarks.graph_speed --manifest data/demo/shards/manifest.json [--steps 6]

Each configuration: a fresh graph, 2 warm-up steps (excluded), then `--steps` timed
steps, each synchronised by `session.run`; images/s is reported as the median of the
per-step rates with their range. Configurations run in one process, one after another
(the harness in a later issue runs them interleaved in fresh processes).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import numpy as np
import tensorflow as tf

from data_pipeline import DataError
from data_pipeline.shards import load_manifest
from graph_api.graph import GraphConfig, build_train_graph

from .stats_basic import summarize

v1 = tf.compat.v1


def measure(config: GraphConfig, manifest: dict, batch: int, steps: int) -> dict:
    g = build_train_graph(config, manifest, batch)
    rng = np.random.default_rng(0)
    images = rng.random((batch,) + tuple(config.image_shape), dtype=np.float32)
    labels = rng.integers(0, config.num_classes, batch).astype(np.int32)
    feed = {g.images: images, g.labels: labels} if config.feed == "feed_dict" else {}
    with g.graph.as_default(), v1.Session() as session:
        session.run(v1.global_variables_initializer())
        if g.train_init is not None:
            session.run(g.train_init)
        start = time.perf_counter()
        session.run(g.train_op, feed)
        first_step = time.perf_counter() - start
        session.run(g.train_op, feed)
        rates = []
        for _ in range(steps):
            start = time.perf_counter()
            session.run(g.train_op, feed)
            rates.append(batch / (time.perf_counter() - start))
    return dict(summarize(rates), first_step_s=first_step)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.graph_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True, help="224x224 rgb224 shards (for the dataset feed)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    try:
        manifest = load_manifest(args.manifest)
    except DataError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    results = []
    for bn, precision, feed in itertools.product(("keras", "fused"), ("fp32", "mixed_bfloat16"),
                                                 ("dataset", "feed_dict")):
        config = GraphConfig(model="resnet50", image_shape=tuple(manifest["image_shape"]),
                             num_classes=len(manifest["class_names"]), bn_mode=bn, precision=precision, feed=feed)
        summary = measure(config, manifest, args.batch_size, args.steps)
        results.append({"bn_mode": bn, "precision": precision, "feed": feed, **summary})
        print(f"resnet50 batch {args.batch_size} bn={bn:6s} {precision:15s} {feed:9s}: "
              f"{summary['median']:.2f} images/s (range {summary['min']:.2f}-{summary['max']:.2f}, "
              f"n={summary['n']}; first step {summary['first_step_s']:.1f} s)", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
