"""Early stopping for the ranker that keeps the best weights, the untrained ones included, and
the epoch report of a fit without validation lists."""

from __future__ import annotations

import time

import tensorflow as tf


class BestWeights(tf.keras.callbacks.Callback):
    """Early stopping on val NDCG@10 that also counts the weights before training (epoch 0)."""

    def __init__(self, initial: float, patience: int, on_epoch, started: float):
        super().__init__()
        self.best = initial
        self.best_epoch = 0
        self.epochs = 0
        self.patience = patience
        self.on_epoch = on_epoch
        self.started = started
        self.best_weights = None
        self.wait = 0

    def on_train_begin(self, logs=None):
        self.best_weights = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.epochs = epoch + 1
        value = float(logs["val_ndcg_10"])
        if value > self.best:
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True
        if self.on_epoch is not None:
            self.on_epoch(
                epoch + 1,
                {
                    "loss": float(logs["loss"]),
                    "ndcg10": float(logs["ndcg_10"]),
                    "val_loss": float(logs["val_loss"]),
                    "val_ndcg10": value,
                    "best_val_ndcg10": self.best,
                    "seconds": time.perf_counter() - self.started,
                },
            )

    def on_train_end(self, logs=None):
        self.model.set_weights(self.best_weights)


class EpochReport(tf.keras.callbacks.Callback):
    """``on_epoch(epoch, {"loss", "ndcg10", "seconds"})`` after every epoch of a fit without
    validation lists (a fixed epoch count)."""

    def __init__(self, on_epoch, started: float):
        super().__init__()
        self.on_epoch = on_epoch
        self.started = started

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.on_epoch(
            epoch + 1,
            {
                "loss": float(logs["loss"]),
                "ndcg10": float(logs["ndcg_10"]),
                "seconds": time.perf_counter() - self.started,
            },
        )
