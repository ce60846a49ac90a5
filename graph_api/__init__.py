"""VGG16-Cell-Transfer and ResNet50 as TensorFlow 1.x static graphs (`tf.compat.v1`)."""
from .model import build_model

__all__ = ["build_model"]
