"""VGG16-Cell-Transfer and ResNet50 in high-level Keras (keras.applications, fit, callbacks)."""
from .model import build_model

__all__ = ["build_model"]
