"""The ranker a training run fits, from its options: parameters, and one scratch ranker reset
between cross-validation folds."""

from __future__ import annotations


def ranker_params(schema, options, epochs: int | None = None):
    """RankerParams of a training run's ranker (``options``: TrainOptions); ``epochs`` caps the
    epochs (a cross-validated count), else ``options.max_epochs``."""
    from brainrank.ranker.learning.ranker_params import RankerParams

    return RankerParams(
        scorer=options.scorer,
        loss=options.loss,
        hidden=tuple(options.hidden),
        dropout=options.dropout,
        l2=options.l2,
        residual_feature=schema.index("fused"),
        seed=options.seed,
        max_epochs=options.max_epochs if epochs is None else epochs,
    )


def scratch_rankers(schema, options):
    """``get(epochs=None)``: one ranker for every cross-validation fold, reset between them (a
    fold's model is scored and dropped before the next fold fits), so its Keras functions are
    traced once rather than once per fold. Never for a model that is kept."""
    from brainrank.ranker.learning.tfr_model import ListwiseRanker

    made: list[ListwiseRanker] = []

    def get(epochs: int | None = None) -> ListwiseRanker:
        params = ranker_params(schema, options, epochs)
        if not made:
            made.append(ListwiseRanker.create(len(schema.names), params))
            return made[0]
        return made[0].reset(params)

    return get
