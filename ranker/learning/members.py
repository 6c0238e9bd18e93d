"""A seed ensemble of DNN rankers trained as one Keras model, then served as one DNN.

A ranker fitted on 100-odd judged queries depends on its random start: on the sample's test
queries three seeds of the same recipe scored 0.850, 0.877 and 0.851 nDCG@10. Averaging the
scores of K members that differ only in their random start removes much of that variance.

Fitting K models one after the other costs K fits, and on two cores much of a fit's time is
per-step overhead, not arithmetic. So the K members are one model: the first Dense layer holds
the members' first layers side by side over the shared standardised features, and each later
layer is a ``MemberDense``, K kernels applied in one batched matmul, member k's activations
through member k's kernel only; the last gives one part per member. ``MemberScores`` adds the
base term to each part, ``MemberMean`` trains each member on its own listwise loss (the mean
of K losses, so no member leans on another), and ``MeanOfMembers`` reports the metric of the
members' mean score, which is what early stopping watches and what serves. ``served_weights``
lays the kernels out block-diagonally and folds the last layer into one column of weights / K:
the result is an ordinary DNN of K times the width whose score is exactly the members' mean,
so saving, the numpy scorer and attributions see nothing new. On the sample's training data
five members train in two to three times the time of one.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from brainrank.ranker.learning.keras_layers import ListScore


def member_initializer(members: int, fan_in: int, fan_out: int, *, shared: bool = False):
    """Glorot uniform at each member's own fans [fan_in, fan_out]. Keras counts the fans of a
    wide kernel over every member (a [K, in, out] kernel: K * in and K * out; a shared-input
    [in, K * out] one: in and K * out), so the scale is raised back to one member's."""
    wide = (fan_in + fan_out * members) if shared else members * (fan_in + fan_out)
    scale = wide / (fan_in + fan_out)
    return tf.keras.initializers.VarianceScaling(scale, mode="fan_avg", distribution="uniform")


@tf.keras.utils.register_keras_serializable(package="brainrank")
class MemberDense(tf.keras.layers.Layer):
    """K Dense layers side by side: [..., K, in] -> [..., K, units], member k through its own
    kernel [in, units] (one batched matmul: no arithmetic on weights between members)."""

    def __init__(self, members, units, activation=None, kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.members, self.units = members, units
        self.activation = tf.keras.activations.get(activation)
        self.kernel_initializer = tf.keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = tf.keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.members, int(input_shape[-1]), self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.members, self.units), initializer="zeros"
        )
        super().build(input_shape)

    def call(self, h):
        shape = tf.shape(h)  # [B, L, K, in]
        by_member = tf.transpose(tf.reshape(h, [-1, self.members, shape[-1]]), [1, 0, 2])
        out = tf.transpose(tf.matmul(by_member, self.kernel), [1, 0, 2])  # [B * L, K, units]
        out = tf.reshape(out, tf.concat([shape[:-1], [self.units]], axis=0))
        return self.activation(out + self.bias)

    def get_config(self):
        return {
            **super().get_config(),
            "members": self.members,
            "units": self.units,
            "activation": tf.keras.activations.serialize(self.activation),
        }


@tf.keras.utils.register_keras_serializable(package="brainrank")
class MemberScores(ListScore):
    """Each member's scores [B, L, K]: its part [B, L, K] plus the optional base feature
    (``ListScore`` with one part per member, kept apart rather than summed)."""

    def call(self, inputs):
        x, parts = inputs
        if self.base_feature is None:
            return parts
        return parts + self.base_weight * x[..., self.base_feature : self.base_feature + 1]


class MemberMean(tf.keras.losses.Loss):
    """The mean over members of ``inner``'s listwise loss on each member's scores."""

    def __init__(self, inner: tf.keras.losses.Loss, members: int):
        super().__init__(name=f"member_mean_{inner.name}")
        self.inner = inner
        self.members = members

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Every member's lists as one batch of B * K lists (one loss computation, not K): the
        # inner loss averages over lists, which is the mean of the K members' losses.
        lists = tf.reshape(tf.transpose(y_pred, [0, 2, 1]), [-1, tf.shape(y_pred)[1]])
        labels = tf.repeat(y_true, self.members, axis=0)
        if sample_weight is not None:
            sample_weight = tf.repeat(sample_weight, self.members, axis=0)
        return self.inner(labels, lists, sample_weight)


class MeanOfMembers(tf.keras.metrics.Metric):
    """``inner`` on the members' mean score, under ``inner``'s name."""

    def __init__(self, inner: tf.keras.metrics.Metric):
        super().__init__(name=inner.name)
        self.inner = inner

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.inner.update_state(y_true, tf.reduce_mean(y_pred, axis=-1), sample_weight)

    def result(self):
        return self.inner.result()

    def reset_state(self):
        self.inner.reset_state()


def build_members(x, h, p) -> tf.keras.Model:
    """The model of ``p.members`` DNNs side by side (RankerParams ``p``): the input ``x``
    [B, L, F] and its standardised features ``h`` -> each member's scores [B, L, K]."""
    k, first = p.members, p.hidden[0]
    reg = tf.keras.regularizers.L2(p.l2 / k) if p.l2 else None  # each member's own L2 is p.l2
    h = tf.keras.layers.Dense(
        first * k,
        activation="relu",
        kernel_initializer=member_initializer(k, int(x.shape[-1]), first, shared=True),
        kernel_regularizer=reg,
        name="dense_0",
    )(h)
    h = tf.keras.layers.Reshape((-1, k, first), name="by_member")(h)  # [B, L, K, h0]
    fan_in = first
    for i, units in enumerate((*p.hidden[1:], 1), start=1):
        if p.dropout:
            h = tf.keras.layers.Dropout(p.dropout, name=f"dropout_{i - 1}")(h)
        last = i == len(p.hidden)
        h = MemberDense(
            k,
            units,
            activation=None if last else "relu",
            kernel_initializer=(
                "zeros"
                if last and p.residual_feature is not None
                else member_initializer(k, fan_in, units)
            ),
            kernel_regularizer=reg,
            name="parts" if last else f"dense_{i}",
        )(h)
        fan_in = units
    parts = tf.keras.layers.Reshape((-1, k), name="parts_by_member")(h)  # [B, L, K]
    scores = MemberScores(p.residual_feature, p.base_weight, name="scores")([x, parts])
    return tf.keras.Model(x, scores, name=f"ranker_dnn_x{k}")


def served_weights(layers: dict[str, list[np.ndarray]], members: int) -> dict:
    """The weights of the one DNN that scores the members' mean: the first layer as it is,
    each later layer block-diagonal (member k's kernel in block k, zeros between members), and
    the last layer's K single-unit kernels stacked into one column divided by K, their biases
    averaged."""
    out = dict(layers)
    for name, weights in layers.items():
        if name.startswith("dense_") and weights and np.ndim(weights[0]) == 3:
            out[name] = [_block_diagonal(weights[0]), weights[1].reshape(-1)]
    kernel, bias = layers["parts"]  # [K, h, 1], [K, 1]
    column = kernel.reshape(-1, 1) / members
    out["parts"] = [column.astype(np.float32), np.asarray([bias.mean()], np.float32)]
    return out


def _block_diagonal(kernels: np.ndarray) -> np.ndarray:
    k, rows, cols = kernels.shape
    out = np.zeros((k * rows, k * cols), np.float32)
    for j in range(k):
        out[j * rows : (j + 1) * rows, j * cols : (j + 1) * cols] = kernels[j]
    return out
