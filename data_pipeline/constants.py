"""Constants shared by the data pipeline, both model APIs and the benchmarks.

One place for the numbers that the two model implementations must agree on, so that
`graph_api` and `keras_api` never hard-code them separately.
"""
from __future__ import annotations

# --- RxRx1 data set -----------------------------------------------------------------
NUM_CLASSES = 1108                 # siRNA treatment classes in RxRx1
NEGATIVE_CONTROL_SIRNA = 1138      # "EMPTY" wells
POSITIVE_CONTROL_SIRNAS = tuple(range(1108, 1138))
CHANNELS = (1, 2, 3, 4, 5, 6)
CHANNEL_NAMES = {
    1: "Hoechst (nuclei)",
    2: "ConA (endoplasmic reticulum)",
    3: "Phalloidin (actin)",
    4: "Syto14 (nucleoli, RNA)",
    5: "MitoTracker (mitochondria)",
    6: "WGA (Golgi, membrane)",
}
CELL_TYPES = ("HEPG2", "HUVEC", "RPE", "U2OS")
EXPERIMENTS_PER_CELL_TYPE = {"HEPG2": 11, "HUVEC": 24, "RPE": 11, "U2OS": 5}
PLATES = (1, 2, 3, 4)
SITES = (1, 2)
WELL_ROWS = "BCDEFGHIJKLMNO"           # 14 rows
WELL_COLUMNS = tuple(range(2, 24))     # 02..23 -> 308 wells per plate
RAW_IMAGE_SIZE = 512

# --- Image modes written into shards --------------------------------------------------
IMAGE_MODE_RGB = "rgb224"          # rxrx1-utils composite, resized (textbook P3.19-P3.20)
IMAGE_MODE_RAW = "raw6"            # the six channels, resized
IMAGE_MODES = (IMAGE_MODE_RGB, IMAGE_MODE_RAW)
DEFAULT_IMAGE_SIZE = 224
SHARD_SCHEMA_VERSION = 1

# --- Model shapes (DESIGN.md "The two models") ----------------------------------------
VGG16_FEATURE_SHAPE = (7, 7, 512)
HEAD_CONV_FILTERS = 64
HEAD_DENSE_UNITS = 2048
HEAD_DROPOUT = 0.5
VGG16_BASE_PARAMS = 14_714_688
VGG16_HEAD_TRAINABLE_PARAMS = 12_924_052
RESNET50_PARAMS = 25_858_004
RESNET50_TRAINABLE_PARAMS = 25_804_884

# --- Batch normalisation: Keras BatchNormalization defaults ---------------------------
BN_MOMENTUM = 0.99
BN_EPSILON_KERAS = 1e-3            # keras.layers.BatchNormalization default
BN_EPSILON_RESNET = 1.001e-5       # keras.applications.ResNet50

# --- RMSprop: Keras 3 defaults ----------------------------------------------------------
RMSPROP_LEARNING_RATE = 1e-3
RMSPROP_RHO = 0.9
RMSPROP_MOMENTUM = 0.0
RMSPROP_EPSILON = 1e-7
