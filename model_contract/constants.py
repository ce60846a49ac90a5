"""Constants both model APIs read, so that `graph_api` and `keras_api` never hard-code
them separately: the models' shapes and parameter counts, Keras's batch-norm and RMSprop
defaults. The class count is the data set's (`data_pipeline.constants.NUM_CLASSES`).
"""
from __future__ import annotations

# --- Model shapes (docs/architecture.md) ----------------------------------------
VGG16_FEATURE_SHAPE = (7, 7, 512)
HEAD_CONV_FILTERS = 64
HEAD_DENSE_UNITS = 2048
HEAD_DROPOUT = 0.5
VGG16_BASE_PARAMS = 14_714_688
VGG16_HEAD_TRAINABLE_PARAMS = 12_924_052
RESNET50_PARAMS = 25_858_004
RESNET50_TRAINABLE_PARAMS = 25_804_884

# --- Input of a pretrained VGG16 base ---------------------------------------------------
# keras.applications' "caffe" preprocessing (`vgg16.preprocess_input`): [0, 255] RGB -> BGR
# minus the ImageNet channel means. The shards give [0, 1] RGB, scaled by 255 first.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
PIXEL_RANGE = 255.0
PREPROCESSINGS = (None, "caffe")

# --- Batch normalisation: Keras BatchNormalization defaults ---------------------------
BN_MOMENTUM = 0.99
BN_EPSILON_KERAS = 1e-3            # keras.layers.BatchNormalization default
BN_EPSILON_RESNET = 1.001e-5       # keras.applications.ResNet50

# --- RMSprop: Keras 3 defaults ----------------------------------------------------------
RMSPROP_LEARNING_RATE = 1e-3
RMSPROP_RHO = 0.9
RMSPROP_MOMENTUM = 0.0
RMSPROP_EPSILON = 1e-7

# float16 dynamic loss scaling, keras.optimizers.LossScaleOptimizer's defaults: the scale starts at
# 2**15, halves (and the step is skipped) when a gradient is not finite, doubles after this many
# finite steps in a row.
LOSS_SCALE_INITIAL = 2.0 ** 15
LOSS_SCALE_GROWTH_STEPS = 2000
