"""Listwise learning-to-rank model on TF-Ranking. Arrays in, arrays out.

This is the only module that imports ``tensorflow_ranking``. It knows nothing about queries or
documents: a batch is ``x`` float32 [n_lists, list_size, n_features] with graded labels ``y``
[n_lists, list_size], where label -1 marks a padding slot (TF-Ranking's losses and metrics
ignore slots with a negative label, so padded features may hold anything finite).

The scorer sees one document at a time (no cross-document interaction, no batch norm), so the
score of a document does not depend on the rest of its list and ``score_docs`` is exact.
Inputs are standardised per feature inside the model, with statistics taken from the first
``fit``'s real training documents; the optional residual base term uses the raw feature.
Hyperparameters are in ``ranker_params``, the plain-Keras layers in ``keras_layers``, the
early stopping and epoch reports in ``early_stopping``, the seed ensemble in ``members``; the
GAM layer and the losses and metric, which are TF-Ranking's, stay here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_ranking as tfr

from brainrank.ranker.learning.early_stopping import BestWeights, EpochReport
from brainrank.ranker.learning.keras_layers import ListScore, Standardize, feature_stats
from brainrank.ranker.learning.members import (
    MeanOfMembers,
    MemberMean,
    build_members,
    served_weights,
)
from brainrank.ranker.learning.ranker_files import load_ranker, save_ranker
from brainrank.ranker.learning.ranker_params import (
    RankerParams,
    check_features,
    check_lists,
)

_RESETTABLE = frozenset({"max_epochs", "patience"})  # steer training, not the model's shape
# Documents per scoring call: bounds memory (a GAM holds one activation block per feature).
_CHUNK_DOCS = 65536
_EVAL_BATCH = 256


@tf.keras.utils.register_keras_serializable(package="brainrank")
class GAMSubscores(tf.keras.layers.Layer):
    """Per-feature sub-scores [B, L, F] from TF-Ranking's GAMLayer (one tower per feature).

    Each tower's output bias belongs to its sub-score, so the sub-scores sum to the GAM score.
    """

    def __init__(
        self,
        n_features: int,
        hidden: list[int],
        dropout: float,
        l2: float,
        zero_output: bool,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.n_features = n_features
        self.hidden = list(hidden)
        self.dropout = dropout
        self.l2 = l2
        self.zero_output = zero_output
        self.gam = tfr.keras.layers.GAMLayer(
            example_feature_num=n_features,
            example_hidden_layer_dims=self.hidden,
            activation="relu",
            use_batch_norm=False,  # batch statistics would mix documents (and padding)
            dropout=dropout or None,
            name="gam",
        )
        # GAMLayer takes no initializer/regularizer arguments; its towers' Dense layers are not
        # built yet, so setting their public attributes here takes effect in build().
        towers = [m for m in self.gam.submodules if isinstance(m, tf.keras.Sequential)]
        for tower in towers:
            denses = [layer for layer in tower.layers if isinstance(layer, tf.keras.layers.Dense)]
            if l2:
                for dense in denses:
                    dense.kernel_regularizer = tf.keras.regularizers.L2(l2)
            if zero_output:
                denses[-1].kernel_initializer = tf.keras.initializers.Zeros()
                denses[-1].bias_initializer = tf.keras.initializers.Zeros()

    def call(self, x, training=None):
        # Towers on 2-D [docs, 1] columns run plain matmuls (3-D inputs go through tensordot).
        columns = tf.split(tf.reshape(x, [-1, self.n_features]), self.n_features, axis=-1)
        # GAMLayer.call defaults to training=True, so always pass a definite flag.
        _, sub_logits, _ = self.gam((columns, None), training=bool(training))
        return tf.reshape(tf.concat(sub_logits, axis=-1), tf.shape(x))

    def get_config(self):
        return {
            **super().get_config(),
            "n_features": self.n_features,
            "hidden": self.hidden,
            "dropout": self.dropout,
            "l2": self.l2,
            "zero_output": self.zero_output,
        }


def _build_model(n_features: int, p: RankerParams) -> tf.keras.Model:
    """The functional model features [B, L, F] -> scores [B, L]; parts live in layer 'parts'."""
    x = tf.keras.Input(shape=(None, n_features), dtype=tf.float32, name="features")
    h = Standardize(n_features, name="standardize")(x)
    zero_output = p.residual_feature is not None
    if p.members > 1:
        return build_members(x, h, p)
    if p.scorer == "dnn":
        reg = tf.keras.regularizers.L2(p.l2) if p.l2 else None
        for i, units in enumerate(p.hidden):
            h = tf.keras.layers.Dense(
                units, activation="relu", kernel_regularizer=reg, name=f"dense_{i}"
            )(h)
            if p.dropout:
                h = tf.keras.layers.Dropout(p.dropout, name=f"dropout_{i}")(h)
        parts = tf.keras.layers.Dense(
            1,
            kernel_initializer="zeros" if zero_output else "glorot_uniform",
            kernel_regularizer=reg,
            name="parts",
        )(h)
    else:
        parts = GAMSubscores(
            n_features, list(p.hidden), p.dropout, p.l2, zero_output, name="parts"
        )(h)
    scores = ListScore(p.residual_feature, p.base_weight, name="scores")([x, parts])
    return tf.keras.Model(x, scores, name=f"ranker_{p.scorer}")


def _compile(model: tf.keras.Model, p: RankerParams) -> None:
    loss = (
        tfr.keras.losses.SoftmaxLoss() if p.loss == "softmax" else tfr.keras.losses.ApproxNDCGLoss()
    )
    metric = tfr.keras.metrics.NDCGMetric(topn=10, name="ndcg_10")
    if p.members > 1:
        loss, metric = MemberMean(loss, p.members), MeanOfMembers(metric)
    model.compile(optimizer=tf.keras.optimizers.Adam(p.learning_rate), loss=loss, metrics=[metric])


def _seed(seed: int) -> None:
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class ListwiseRanker:
    """A per-document scorer trained with a listwise TF-Ranking loss."""

    def __init__(self, n_features: int, params: RankerParams, model: tf.keras.Model):
        self.n_features = n_features
        self.params = params
        self.model = model
        spec = [tf.TensorSpec([None, None, n_features], tf.float32)]
        self._score_fn = tf.function(self._forward, input_signature=spec)
        self._parts_fn = None
        self._initial: list[np.ndarray] | None = None  # set by create(), for reset()
        if params.scorer == "gam":
            self._parts_model = tf.keras.Model(model.input, model.get_layer("parts").output)
            self._parts_fn = tf.function(self._forward_parts, input_signature=spec)

    def _forward(self, x):
        scores = self.model(x, training=False)
        return tf.reduce_mean(scores, axis=-1) if self.params.members > 1 else scores

    def _forward_parts(self, x):
        parts = self._parts_model(x, training=False)
        r = self.params.residual_feature
        if r is not None:
            onehot = tf.one_hot(r, self.n_features, dtype=tf.float32)
            parts = parts + self.params.base_weight * x[..., r : r + 1] * onehot
        return parts

    @classmethod
    def create(cls, n_features: int, params: RankerParams) -> ListwiseRanker:
        """A freshly initialised model for ``n_features`` features.

        Seeds Python, NumPy and TensorFlow globally (``tf.keras.utils.set_random_seed``) and
        turns on op determinism for the whole process. The model's first ``fit`` seeds again
        before tracing, so create + fit with the same seed give identical weights.
        """
        if not isinstance(n_features, int) or isinstance(n_features, bool) or n_features < 1:
            raise ValueError(f"n_features={n_features!r}: must be an int >= 1")
        r = params.residual_feature
        if r is not None and r >= n_features:
            raise ValueError(
                f"RankerParams.residual_feature={r} is out of range for {n_features} features"
            )
        _seed(params.seed)
        model = _build_model(n_features, params)
        _compile(model, params)
        ranker = cls(n_features, params, model)
        ranker._initial = [w.copy() for w in model.get_weights()]
        return ranker

    def reset(self, params: RankerParams | None = None) -> ListwiseRanker:
        """This ranker as ``create`` made it (initial weights, no input statistics, a fresh
        Adam), optionally with other ``max_epochs`` or ``patience``; returns self. The traced
        Keras functions stay, which is the point: tracing costs seconds per new model, and
        cross-validation fits one per fold. Dropout draws go on from the last fit, so a reset
        ranker trains deterministically but not bit-identically to a newly created one."""
        if self._initial is None:
            raise ValueError("only a ranker made by ListwiseRanker.create can be reset")
        if params is not None:
            new, old = dataclasses.asdict(params), dataclasses.asdict(self.params)
            fixed = sorted(k for k in new if new[k] != old[k] and k not in _RESETTABLE)
            if fixed:
                raise ValueError(f"reset can change only {sorted(_RESETTABLE)}, not {fixed}")
            self.params = params
        self.model.set_weights(self._initial)
        for variable in self.model.optimizer.variables:  # the step count and Adam's moments
            variable.assign(tf.zeros_like(variable))
        self.model.reset_metrics()
        return self

    def copy(self) -> ListwiseRanker:
        """A new ranker with this one's parameters and weights, for keeping a model that a
        scratch ranker trained (no optimizer state, nothing traced; the global seed untouched).
        A seed ensemble's copy is its served form (``members.served_weights``): one DNN of
        ``members`` times the width, with the same scores."""
        layers = {layer.name: layer.get_weights() for layer in self.model.layers}
        p = self.params
        if p.members > 1:
            wide = dataclasses.replace(p, hidden=tuple(h * p.members for h in p.hidden), members=1)
            return self.assemble(self.n_features, wide, served_weights(layers, p.members))
        return self.assemble(self.n_features, p, layers)

    @classmethod
    def assemble(
        cls, n_features: int, params: RankerParams, layers: dict | None = None
    ) -> ListwiseRanker:
        """A ranker built for ``params`` with the weights ``layers`` gives by layer name (or
        Keras' initial ones; the global seed untouched)."""
        model = _build_model(n_features, params)
        _compile(model, params)
        for layer in model.layers:
            if layer.weights and layers is not None:
                layer.set_weights(layers[layer.name])
        return cls(n_features, params, model)

    @property
    def gam_bias(self) -> float:
        """Constant to add to the summed subscores: always 0.0, tower biases are in subscores."""
        return 0.0

    # ----- training -------------------------------------------------------------------------

    def fit(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray | None,
        y_val: np.ndarray | None,
        *,
        on_epoch: Callable[[int, dict], None] | None = None,
    ) -> dict:
        """Train with early stopping on validation NDCG@10 and keep the best weights.

        The weights before training count as epoch 0, so a residual model never ends worse on
        validation than its base feature. ``on_epoch(epoch, logs)`` gets the 1-based epoch and
        floats loss, ndcg10, val_loss, val_ndcg10, best_val_ndcg10, seconds. The first fit also
        sets the input standardisation from the real (label >= 0) training documents. Returns
        {"epochs", "best_epoch", "best_val_ndcg10", "seconds"}.

        Without validation lists (None) it trains exactly ``max_epochs`` epochs (a count chosen
        beforehand, ``epochs.cv_epochs``) and keeps the last weights; ``on_epoch`` then gets
        loss, ndcg10 and seconds, and best_val_ndcg10 is None.
        """
        started = time.perf_counter()
        x_train, y_train = self._check_xy(x_train, y_train, "train")
        if x_val is not None:
            x_val, y_val = self._check_xy(x_val, y_val, "val")
        p = self.params
        std = self.model.get_layer("standardize")
        mean, scale = std.get_weights()
        if not mean.any() and (scale == 1).all():
            std.set_weights(feature_stats(x_train, y_train))

        if self.model.train_function is None:
            # Dropout ops take their seeds from the global seed when train_function is traced,
            # so seed just before the first trace. Not on later fits: set_random_seed clears
            # TF's kernel cache process-wide and every tf.function re-instantiates (seconds).
            _seed(p.seed)
        train = (
            tf.data.Dataset.from_tensor_slices((x_train, y_train))
            .shuffle(len(x_train), seed=p.seed, reshuffle_each_iteration=True)
            .batch(p.batch_size)
            .prefetch(2)
        )
        if x_val is None:
            return self._fit_fixed(train, on_epoch, started)
        val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(_EVAL_BATCH)
        initial = self.model.evaluate(val, verbose=0, return_dict=True)["ndcg_10"]
        tracker = BestWeights(float(initial), p.patience, on_epoch, started)
        if p.max_epochs > 0:
            self.model.fit(
                train, validation_data=val, epochs=p.max_epochs, callbacks=[tracker], verbose=0
            )
        return {
            "epochs": tracker.epochs,
            "best_epoch": tracker.best_epoch,
            "best_val_ndcg10": tracker.best,
            "seconds": time.perf_counter() - started,
        }

    def _fit_fixed(self, train, on_epoch, started: float) -> dict:
        epochs = self.params.max_epochs
        callbacks = [] if on_epoch is None else [EpochReport(on_epoch, started)]
        if epochs > 0:
            self.model.fit(train, epochs=epochs, callbacks=callbacks, verbose=0)
        return {
            "epochs": epochs,
            "best_epoch": epochs,
            "best_val_ndcg10": None,
            "seconds": time.perf_counter() - started,
        }

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict:
        """{"loss": listwise loss (with the L2 term), "ndcg10": mean NDCG@10} on labelled lists."""
        x, y = self._check_xy(x, y, "eval", need_positive=False)
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(_EVAL_BATCH)
        out = self.model.evaluate(data, verbose=0, return_dict=True)
        return {"loss": float(out["loss"]), "ndcg10": float(out["ndcg_10"])}

    # ----- scoring --------------------------------------------------------------------------

    def score(self, x: np.ndarray) -> np.ndarray:
        """Scores [n_lists, list_size] for x [n_lists, list_size, F].

        One list [list_size, F] gives [list_size]. Padding slots get a score too; the caller
        masks them.
        """
        x = self._check_x(x, ranks=(2, 3))
        if x.ndim == 2:
            return self._run(self._score_fn, x[None])[0]
        return self._run(self._score_fn, x)

    def score_docs(self, x: np.ndarray) -> np.ndarray:
        """Scores [n_docs] of the documents x [n_docs, F], a pure per-document function."""
        x = self._check_x(x, ranks=(2,))
        return self._run(self._score_fn, x[None])[0]

    def subscores(self, x: np.ndarray) -> np.ndarray:
        """GAM per-feature contributions [n_docs, F] for x [n_docs, F].

        Row sums equal ``score_docs(x)`` (``gam_bias`` is 0: each tower's output bias is part of
        its feature's subscore). In residual mode the base term is part of that feature's
        subscore.
        """
        if self._parts_fn is None:
            raise ValueError(
                f"subscores need scorer='gam', this ranker's scorer is {self.params.scorer!r}"
            )
        x = self._check_x(x, ranks=(2,))
        return self._run(self._parts_fn, x[None])[0]

    def _run(self, fn, x: np.ndarray) -> np.ndarray:
        n_lists, list_size = x.shape[:2]
        if n_lists * list_size <= _CHUNK_DOCS:
            return fn(tf.constant(x)).numpy()
        if n_lists == 1:  # one long list: per-document, so split along the list axis
            step = _CHUNK_DOCS
            parts = [fn(tf.constant(x[:, i : i + step])).numpy() for i in range(0, list_size, step)]
            return np.concatenate(parts, axis=1)
        step = max(1, _CHUNK_DOCS // max(1, list_size))
        parts = [fn(tf.constant(x[i : i + step])).numpy() for i in range(0, n_lists, step)]
        return np.concatenate(parts, axis=0)

    # ----- validation -----------------------------------------------------------------------

    def _check_x(self, x, ranks: tuple[int, ...], name: str = "x") -> np.ndarray:
        return check_features(x, self.n_features, ranks, name)

    def _check_xy(self, x, y, name: str, need_positive: bool = True):
        return check_lists(x, y, self.n_features, name, need_positive=need_positive)

    # ----- persistence (ranker_files) -----------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write the folder ``ranker_files.save_ranker`` describes (a seed ensemble in its
        served form, ``copy``)."""
        save_ranker(self.copy() if self.params.members > 1 else self, directory)

    @classmethod
    def load(cls, directory: Path) -> ListwiseRanker:
        """Read a folder written by ``save`` (``ranker_files.load_ranker``)."""
        return load_ranker(cls, directory)
