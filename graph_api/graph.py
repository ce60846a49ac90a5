"""The TF1 training graph: inputs (placeholders or a tf.data iterator), two towers sharing
one set of variables, loss, accuracy and the train op; and the TF1 runtime it is run on.

Entry points that own their process (``python -m graph_api``, the benchmark's graph workers)
call `use_tf1_runtime` first: graph mode, reference variables, control flow v1. The same
functions build the same graph inside an eager (TF2) process, under ``graph.as_default()``,
which is how the equivalence tests run both APIs in one process."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import tensorflow as tf

from api_runs.devices import PARAMETER_SERVER, Cluster, VariableUpdate, variable_update_named
from data_pipeline.constants import NUM_CLASSES
from data_pipeline.dataset import make_dataset, pass_order
from graph_api.distribute import (
    SYNC_SCOPE,
    build_towers,
    cluster_device,
    is_replica_copy,
    sync_op,
    sync_replicas,
    tower_device,
    worker_slice,
)
from graph_api.layers import replica
from graph_api.model import build_model
from graph_api.optimizers import (
    DEFAULT_LEARNING_RATE,
    apply_gradients,
    gradients,
    minimize,
)
from model_contract.batch_norm_modes import KERAS_BN
from model_contract.constants import HEAD_DROPOUT
from model_contract.precisions import precision_named
from model_contract.small_models import input_signature
from plumbing.errors import UserError
from plumbing.tables import record_named

v1 = tf.compat.v1


@dataclass(frozen=True)
class GraphFeed:
    """How the train tower gets its batches (``--feed``)."""
    name: str
    # numpy batches through placeholders, in each Session.run's feed_dict (the textbook's loop);
    # else an initializable tf.data iterator inside the graph
    placeholders: bool


DATASET = GraphFeed("dataset", placeholders=False)
FEED_DICT = GraphFeed("feed_dict", placeholders=True)
FEEDS: dict[str, GraphFeed] = {f.name: f for f in (DATASET, FEED_DICT)}


def feed_named(name: str) -> GraphFeed:
    """The record of feed `name`; a user error naming the choices for an unknown one."""
    return record_named(FEEDS, name, "feed")


@dataclass
class GraphConfig:
    """Everything that shapes the graph. image_shape is (H, W, C) of one input sample."""

    model: str = "resnet50"
    image_shape: tuple = (224, 224, 3)
    num_classes: int = NUM_CLASSES
    precision: str = "fp32"
    bn_mode: str = KERAS_BN.name
    data_format: str = "NHWC"
    preprocessing: str | None = None
    dropout: float = HEAD_DROPOUT   # the VGG16 head's rate
    optimizer: str = "rmsprop"
    learning_rate: float | None = None
    optimizer_options: dict = field(default_factory=dict)
    feed: str = DATASET.name
    seed: int = 0
    devices: tuple = ()              # one tower per device when more than one (graph_api.distribute)
    variable_update: str = PARAMETER_SERVER.name

    @property
    def feed_spec(self) -> GraphFeed:
        """The feed's record: placeholders or an iterator in the graph."""
        return feed_named(self.feed)

    @property
    def variable_update_spec(self) -> VariableUpdate:
        """The variable update's record: where the towers keep their variables."""
        return variable_update_named(self.variable_update)

    def model_options(self) -> dict:
        return {"bn_mode": self.bn_mode, "data_format": self.data_format, "precision": self.precision,
                "preprocessing": self.preprocessing, "dropout": self.dropout}


@dataclass
class TrainGraph:
    graph: tf.Graph
    config: GraphConfig
    images: tf.Tensor              # train-tower input: placeholder (feed_dict) or iterator output
    labels: tf.Tensor
    eval_images: tf.Tensor | None  # None: built without the eval tower (`build_train_graph`)
    eval_labels: tf.Tensor | None
    learning_rate: tf.Tensor       # placeholder with the optimizer's default
    epoch_seed: tf.Tensor          # int64 placeholder: the shuffle seed of this epoch's pass
    loss: tf.Tensor
    accuracy: tf.Tensor
    train_op: tf.Operation
    eval_loss: tf.Tensor | None
    eval_accuracy: tf.Tensor | None
    eval_probabilities: tf.Tensor | None
    eval_count: tf.Tensor | None   # samples in the evaluated batch
    train_init: tf.Operation | None = None
    eval_init: tf.Operation | None = None
    model_variables: list = field(default_factory=list)
    train_order: tf.Tensor | None = None   # feed_dict: (N, 2) [shard, index] of pass `pass_index`
    pass_index: tf.Tensor | None = None    # int64 placeholder, default 0
    sync_op: tf.Operation | None = None    # towers with replicated variables: copy tower 0's state
    cluster_sync: object = None            # a cluster worker's graph: graph_api.distribute.ClusterSync


def use_tf1_runtime() -> None:
    """Switch this process to TensorFlow 1.x semantics with `tf.compat.v1.disable_v2_behavior`:
    no eager execution, reference (not resource) variables, control flow v1 (Switch/Merge, not
    If/While), v1 tensor shapes and v1 tf.data. Call before any graph is built."""
    hide_tf1_deprecation_notices()
    v1.disable_v2_behavior()


def hide_tf1_deprecation_notices() -> None:
    """This package uses the TF1 API on purpose; TF's notices that parts of it are deprecated
    would only bury the progress lines."""
    tf.get_logger().addFilter(lambda record: "deprecated and will be removed" not in record.getMessage())


def runtime_facts() -> dict:
    """The runtime this process really runs on, as observed (not as requested)."""
    return {"executing_eagerly": tf.executing_eagerly(),
            "resource_variables": v1.resource_variables_enabled(),
            "control_flow_v2": v1.control_flow_v2_enabled(),
            "tf1_runtime": not (tf.executing_eagerly() or v1.resource_variables_enabled()
                                or v1.control_flow_v2_enabled())}


def loss_and_accuracy(logits: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean sparse categorical cross-entropy (nats) and top-1 accuracy of (B, C) logits (or (B, T,
    C) with (B, T) labels: one prediction per token)."""
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    correct = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
    return loss, tf.reduce_mean(tf.cast(correct, tf.float32))


def model_variables(graph: tf.Graph | None = None) -> list[tf.Variable]:
    """The variables of the naming contract: model weights and BN statistics, no optimizer
    slots, step counters or zero-debias accumulators."""
    graph = graph or v1.get_default_graph()
    skip = ("optimizer/", "global_step", "/biased", "/local_step", "loss_scale/")
    return [v for v in checkpoint_variables(graph) if not any(part in v.op.name for part in skip)]


def checkpoint_variables(graph: tf.Graph | None = None) -> list[tf.Variable]:
    """Every variable a checkpoint holds: all but the per-device copies of replicated towers,
    which are tower 0's (`graph_api.distribute.sync_op` restores them)."""
    graph = graph or v1.get_default_graph()
    return [v for v in graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)
            if not is_replica_copy(v) and not v.op.name.startswith(SYNC_SCOPE)]


def placeholders(config: GraphConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """`images` and `labels` placeholders of any batch size for `config.model`'s inputs."""
    dtype, label_shape = input_signature(config.model)
    return (v1.placeholder(tf.as_dtype(dtype), (None,) + tuple(config.image_shape), name="images"),
            v1.placeholder(tf.int32, (None,) + tuple(label_shape), name="labels"))


def build_train_graph(config: GraphConfig, manifest: str | dict | None = None, batch_size: int = 32,
                      eval_batch_size: int | None = None,
                      train_dataset: Callable[[], tf.data.Dataset] | None = None,
                      cluster: Cluster | None = None, evaluation: bool = True) -> TrainGraph:
    """A fresh `tf.Graph` for training `config.model`.

    feed="dataset": both towers read `make_dataset` iterators of `manifest` (train split
    repeated per epoch via `train_init`, val split via `eval_init`). feed="feed_dict":
    both towers read the `images`/`labels` placeholders (the textbook style), fed numpy
    batches that the loop reads from the shards in the order `train_order` gives.
    `train_dataset` (called inside the new graph) replaces the manifest's train split, e.g.
    in-memory batches for benchmarks; the eval tower then reads the placeholders.
    Several `config.devices` build one train tower per device (`graph_api.distribute`); a
    `cluster` builds this worker's graph of a between-graph replicated run, whose `train_op`
    is a tensor: the global step after the synchronous update it took part in.
    `evaluation=False` builds the train tower alone (the eval fields are None): what a benchmark
    times, whose first step then builds no more than Keras's `fit` without validation data does.
    """
    feed_named(config.feed)  # an unknown feed or variable update: a user error before anything is built
    variable_update_named(config.variable_update)
    if cluster is not None and len(config.devices) > 1:
        raise UserError("--devices: a worker of a cluster trains on one device")
    graph = tf.Graph()
    with graph.as_default(), v1.device(cluster_device(cluster)), \
            replica(cluster.worker_index if cluster else 0):
        v1.set_random_seed(config.seed)
        epoch_seed = v1.placeholder_with_default(tf.constant(config.seed, tf.int64), (), name="epoch_seed")
        (images, labels, eval_images, eval_labels, train_init, eval_init, train_order,
         pass_index) = _inputs(config, manifest, batch_size, eval_batch_size, train_dataset, epoch_seed, evaluation)
        if cluster is not None:
            images, labels = worker_slice(cluster, images, labels)
        # float16 scales its loss as Keras's LossScaleOptimizer does
        loss_scale = "dynamic" if precision_named(config.precision).loss_scaled else 1.0
        towers = None
        if len(config.devices) > 1:
            towers = build_towers(config, images, labels, loss_scale, loss_and_accuracy)
            loss, accuracy = towers.loss, towers.accuracy
        else:
            logits = build_model(config.model, images, True, config.num_classes, **config.model_options())
        eval_logits = _eval_logits(config, eval_images, towers is not None) if evaluation else None
        if towers is None:  # after the eval tower, as always: op creation order sets the initial weights
            loss, accuracy = loss_and_accuracy(logits, labels)
        eval_loss, eval_accuracy = loss_and_accuracy(eval_logits, eval_labels) if evaluation else (None, None)
        default_lr = (config.learning_rate if config.learning_rate is not None
                      else DEFAULT_LEARNING_RATE.get(config.optimizer, 1e-3))
        learning_rate = v1.placeholder_with_default(tf.constant(default_lr, tf.float32), (), name="learning_rate")
        cluster_sync = None
        if towers is not None:
            with tf.control_dependencies(towers.update_ops):
                train_op = apply_gradients(towers.replicas, learning_rate, config.optimizer, loss_scale,
                                           **config.optimizer_options)
        elif cluster is not None:
            train_op, cluster_sync = _synchronous_step(config, cluster, loss, learning_rate, loss_scale)
        else:
            train_op = minimize(loss, v1.trainable_variables(), learning_rate, config.optimizer,
                                loss_scale=loss_scale, **config.optimizer_options)
        probabilities, count = (tf.nn.softmax(eval_logits), tf.shape(eval_labels)[0]) if evaluation else (None, None)
        return TrainGraph(graph, config, images, labels, eval_images, eval_labels, learning_rate, epoch_seed,
                          loss, accuracy, train_op, eval_loss, eval_accuracy, probabilities, count,
                          train_init, eval_init, model_variables(graph), train_order, pass_index,
                          sync_op(graph), cluster_sync)


def _eval_logits(config: GraphConfig, images: tf.Tensor, on_towers: bool) -> tf.Tensor:
    """The inference tower on the train tower's variables -> (B, C) logits, on the first device
    when the train step has several."""
    with v1.variable_scope(v1.get_variable_scope(), reuse=True), \
            v1.device(tower_device(config, 0) if on_towers else None):
        return build_model(config.model, images, False, config.num_classes, **config.model_options())


def _inputs(config: GraphConfig, manifest, batch_size: int, eval_batch_size: int | None, train_dataset,
            epoch_seed: tf.Tensor, evaluation: bool) -> tuple:
    """-> (images, labels, eval images, eval labels, train_init, eval_init, train_order, pass_index);
    without `evaluation`, no input of its own for the eval tower."""
    train_init = eval_init = train_order = pass_index = eval_images = eval_labels = None
    if not config.feed_spec.placeholders and train_dataset is not None:
        train_it = v1.data.make_initializable_iterator(train_dataset())
        images, labels = train_it.get_next()
        train_init = train_it.initializer
        if evaluation:
            eval_images, eval_labels = placeholders(config)
    elif not config.feed_spec.placeholders:
        if manifest is None:
            raise UserError("feed='dataset' needs a manifest")
        train_it = v1.data.make_initializable_iterator(make_dataset(
            manifest, "train", batch_size, shuffle=True, seed=epoch_seed, drop_remainder=True, repeat=True))
        eval_it = v1.data.make_initializable_iterator(make_dataset(
            manifest, "val", eval_batch_size or batch_size, shuffle=False)) if evaluation else None
        images, labels = train_it.get_next()
        train_init = train_it.initializer
        if eval_it is not None:
            (eval_images, eval_labels), eval_init = eval_it.get_next(), eval_it.initializer
    else:
        images, labels = placeholders(config)
        if evaluation:  # the eval tower reads the same placeholders
            eval_images, eval_labels = images, labels
        if manifest is not None:  # the order of each pass; the loop reads the pixels itself
            pass_index = v1.placeholder_with_default(tf.constant(0, tf.int64), (), name="pass_index")
            train_order = pass_order(manifest, "train", epoch_seed, pass_index)
    return images, labels, eval_images, eval_labels, train_init, eval_init, train_order, pass_index


def _synchronous_step(config: GraphConfig, cluster: Cluster, loss: tf.Tensor, learning_rate: tf.Tensor,
                      loss_scale) -> tuple:
    """A worker's step of a between-graph run (`graph_api.distribute.sync_replicas`); the
    batch-norm moving averages follow the chief's slice only, as tower 0's in one process."""
    var_list = v1.trainable_variables()
    with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS) if cluster.is_chief else []):
        grads = gradients(loss, var_list, loss_scale)
    return sync_replicas(cluster, grads, var_list, lambda means: apply_gradients(
        [(means, var_list)], learning_rate, config.optimizer, loss_scale, **config.optimizer_options))
