"""Constants of the RxRx1 data set and of the shards written from it.

The numbers the two model implementations must agree on (head widths, BN and RMSprop
settings) live in `model_contract.constants`.
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
FEATURE_MODE = "vgg16_features"    # shards of cached 7x7x512 features (extract-features)
DEFAULT_IMAGE_SIZE = 224
SHARD_SCHEMA_VERSION = 1
