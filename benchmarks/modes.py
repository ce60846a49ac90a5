"""The mode table: every way the harness executes the same model, as a typed record.

A mode's name is what results.json, the key of a configuration and the command line carry;
everything the code branches on (which API, which runtime, who drives the loop, the feed, the
batch-norm kernel, the variable update, steps per execution, the tasks it can time, whether it
runs on several replicas) is a field of its record, looked up by `mode_named`. No other module
spells a mode's name: they use the records below.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from api_runs.devices import PARAMETER_SERVER, REPLICATED, VariableUpdate
from benchmarks.tasks import EVALUATE, GRADIENTS, INFERENCE, TASKS, TRAIN, Task
from model_contract.batch_norm_modes import FUSED_BN, KERAS_BN, BatchNormMode
from plumbing.tables import record_named


class Api(Enum):
    GRAPH = "graph"              # graph_api: TF1 static graphs through tf.compat.v1 and a Session
    KERAS = "keras"              # keras_api on Keras 3
    TF_KERAS = "tf_keras"        # keras_api on Keras 2 (tf-keras), in its own worker with TF_USE_LEGACY_KERAS=1


class Runtime(Enum):
    TF1 = "tf1"                  # graph_api's `use_tf1_runtime` (reference variables, control flow v1)
    TF2 = "tf2"                  # TensorFlow 2 semantics (eager by default, resource variables)
    TF1_GRAPH_MODE = "tf1-graph-mode"  # `disable_eager_execution`: Keras 2 builds a graph, a Session runs it


class Driver(Enum):
    """Who runs the loop of steps."""
    SESSION = "session"          # our loop of `Session.run` calls
    FIT = "fit"                  # Keras's own loop: fit / evaluate / predict, timed by a callback
    LOOP = "loop"                # our loop around the Keras model (GradientTape)
    CALL = "call"                # our loop, one Keras call per batch


class Feed(Enum):
    DATASET = "dataset"          # batches from tf.data (in the graph: an initializable iterator)
    FEED_DICT = "feed_dict"      # numpy batches through Session.run's feed_dict
    NUMPY = "numpy"              # numpy batches handed to a Keras call


class Call(Enum):
    """The Keras call of a `Driver.CALL` mode."""
    ON_BATCH = "on_batch"        # train_on_batch / predict_on_batch
    PREDICT = "predict"          # model.predict(x), the textbook's loop
    MODEL_CALL = "model_call"    # eager model(x)


@dataclass(frozen=True)
class Mode:
    name: str
    api: Api
    runtime: Runtime
    driver: Driver
    feed: Feed = Feed.DATASET
    tasks: frozenset[Task] = frozenset({TRAIN, INFERENCE})
    task_note: str | None = None           # why another task cannot run, where the mode itself says
    bn: BatchNormMode = KERAS_BN           # graph_api's batch norm: Keras's rule written out, or fused
    variable_update: VariableUpdate = PARAMETER_SERVER  # graph_api's, on several devices
    steps_per_execution: int = 1           # training steps behind one timed sample
    traced: bool = True                    # runs a compiled program (Session, tf.function); XLA needs one
    call: Call | None = None
    scaling_base: str | None = None        # several replicas: the one-device mode it scales from
    min_devices: int = 1
    # On a GPU, the host prepares the next step while the device runs this one: Keras 3's fit
    # dispatches its callbacks asynchronously when all are async-safe (History, no progress bar),
    # so it reads no result back per step; a Session.run returns only when its fetches are back.
    overlaps_device: bool = False

    @property
    def is_graph(self) -> bool:
        return self.api is Api.GRAPH


STEPS_PER_EXECUTION = 32   # keras-fit-spe; one timed sample is one execution, reported per step

_GRAPH_TASKS = frozenset(TASKS.values())
GRAPH = Mode("graph", Api.GRAPH, Runtime.TF1, Driver.SESSION, tasks=_GRAPH_TASKS, scaling_base="graph")
GRAPH_FEED = Mode("graph-feed", Api.GRAPH, Runtime.TF1, Driver.SESSION, Feed.FEED_DICT, tasks=_GRAPH_TASKS)
GRAPH_FUSED_BN = Mode("graph-fused-bn", Api.GRAPH, Runtime.TF1, Driver.SESSION, bn=FUSED_BN)
# `graph`'s graph and Session without `use_tf1_runtime`: what the TF1 runtime itself changes
GRAPH_V2 = Mode("graph-v2", Api.GRAPH, Runtime.TF2, Driver.SESSION, tasks=_GRAPH_TASKS)
# a copy of the variables per device, gradients all-reduced with collective ops
# (tf_cnn_benchmarks' `replicated`; `graph` on several devices is its `parameter_server`)
GRAPH_REPLICATED = Mode("graph-replicated", Api.GRAPH, Runtime.TF1, Driver.SESSION, tasks=frozenset({TRAIN}),
                        task_note="several replicas are measured in training", variable_update=REPLICATED,
                        scaling_base="graph", min_devices=2)
KERAS_FIT = Mode("keras-fit", Api.KERAS, Runtime.TF2, Driver.FIT, tasks=frozenset({TRAIN, INFERENCE, EVALUATE}),
                 scaling_base="keras-fit", overlaps_device=True)
KERAS_FIT_SPE = Mode("keras-fit-spe", Api.KERAS, Runtime.TF2, Driver.FIT, tasks=frozenset({TRAIN}),
                     task_note="steps_per_execution is measured in training", steps_per_execution=STEPS_PER_EXECUTION,
                     overlaps_device=True)
KERAS_TOB = Mode("keras-tob", Api.KERAS, Runtime.TF2, Driver.CALL, Feed.NUMPY, call=Call.ON_BATCH)
KERAS_CTL = Mode("keras-ctl", Api.KERAS, Runtime.TF2, Driver.LOOP, tasks=frozenset({TRAIN, GRADIENTS, INFERENCE}))
EAGER = Mode("eager", Api.KERAS, Runtime.TF2, Driver.LOOP, tasks=frozenset({TRAIN, GRADIENTS, INFERENCE}),
             traced=False)
KERAS_PREDICT = Mode("keras-predict", Api.KERAS, Runtime.TF2, Driver.CALL, Feed.NUMPY, tasks=frozenset({INFERENCE}),
                     task_note="keras-predict is a prediction call", call=Call.PREDICT)
KERAS_CALL = Mode("keras-call", Api.KERAS, Runtime.TF2, Driver.CALL, Feed.NUMPY, tasks=frozenset({INFERENCE}),
                  task_note="keras-call is a prediction call", traced=False, call=Call.MODEL_CALL)
_TF_KERAS_NOTE = "the tf-keras modes train the small models, ResNet50 and the VGG16 head"
TFKERAS_FIT = Mode("tfkeras-fit", Api.TF_KERAS, Runtime.TF2, Driver.FIT, tasks=frozenset({TRAIN}),
                   task_note=_TF_KERAS_NOTE)
TFKERAS_V1 = Mode("tfkeras-v1", Api.TF_KERAS, Runtime.TF1_GRAPH_MODE, Driver.FIT, tasks=frozenset({TRAIN}),
                  task_note=_TF_KERAS_NOTE)

# In this order in every listing, plot and choice.
MODES: dict[str, Mode] = {m.name: m for m in (
    GRAPH, GRAPH_FEED, GRAPH_FUSED_BN, GRAPH_V2, GRAPH_REPLICATED,
    KERAS_FIT, KERAS_FIT_SPE, KERAS_TOB, KERAS_CTL, EAGER, KERAS_PREDICT, KERAS_CALL,
    TFKERAS_FIT, TFKERAS_V1)}
MODE_NAMES = tuple(MODES)
BASELINE = KERAS_FIT                 # the Keras side every other mode of a group is compared with
INFERENCE_BASELINE = KERAS_PREDICT   # where no keras-fit ran: the textbook's one call per batch
REPLICA_MODES = tuple(m for m in MODES.values() if m.scaling_base)  # run on several devices or workers


def mode_named(name: str) -> Mode:
    """The record of mode `name`; a user error naming the choices for an unknown one."""
    return record_named(MODES, name, "mode")


def is_graph(name: str) -> bool:
    """Whether mode `name` (as results.json records it) runs graph_api's program."""
    return mode_named(name).is_graph
