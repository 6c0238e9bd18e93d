"""The ranker's plain-Keras layers: input standardisation and the list score.

Registered under ``package="brainrank"``: the registered names (``brainrank>Standardize``,
``brainrank>ListScore``) are what saved models refer to, so they must not change. The GAM
layer wraps TF-Ranking and lives with it in ``tfr_model``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="brainrank")
class Standardize(tf.keras.layers.Layer):
    """Per-feature (x - mean) / scale with stored, non-trainable statistics (identity at first)."""

    def __init__(self, n_features: int, **kwargs):
        super().__init__(**kwargs)
        self.n_features = n_features

    def build(self, input_shape):
        self.mean = self.add_weight(
            name="mean", shape=(self.n_features,), initializer="zeros", trainable=False
        )
        self.scale = self.add_weight(
            name="scale", shape=(self.n_features,), initializer="ones", trainable=False
        )
        super().build(input_shape)

    def call(self, x):
        return (x - self.mean) / self.scale

    def get_config(self):
        return {**super().get_config(), "n_features": self.n_features}


@tf.keras.utils.register_keras_serializable(package="brainrank")
class ListScore(tf.keras.layers.Layer):
    """Scores [B, L]: the sum of per-document parts [B, L, P] plus an optional base feature."""

    def __init__(self, base_feature: int | None = None, base_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.base_feature = base_feature
        self.base_weight = base_weight

    def call(self, inputs):
        x, parts = inputs
        scores = tf.reduce_sum(parts, axis=-1)
        if self.base_feature is not None:
            scores = scores + self.base_weight * x[..., self.base_feature]
        return scores

    def get_config(self):
        return {
            **super().get_config(),
            "base_feature": self.base_feature,
            "base_weight": self.base_weight,
        }


def feature_stats(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Mean and scale (std, or 1 for a constant feature) over the real documents.

    ``Standardize``'s weights from x [n_lists, list_size, F], real where the label y >= 0.
    """
    docs = x[y >= 0].astype(np.float64)
    mean = docs.mean(axis=0)
    std = docs.std(axis=0)
    scale = np.where(std > 1e-6, std, 1.0)
    return [mean.astype(np.float32), scale.astype(np.float32)]
