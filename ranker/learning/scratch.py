"""The ranker a training run fits, from its options: parameters, and one scratch ranker reset
between cross-validation folds."""

from __future__ import annotations


def ranker_params(schema, options, epochs: int | None = None, members: int = 1):
    """RankerParams of a training run's ranker (``options``: TrainOptions); ``epochs`` caps the
    epochs (a cross-validated count), else ``options.max_epochs``; ``members`` > 1 makes it a
    seed ensemble."""
    from brainrank.ranker.learning.ranker_params import RankerParams

    return RankerParams(
        scorer=options.scorer,
        loss=options.loss,
        hidden=tuple(options.hidden),
        dropout=options.dropout,
        l2=options.l2,
        residual_feature=schema.index("fused"),
        seed=options.seed,
        members=members,
        max_epochs=options.max_epochs if epochs is None else epochs,
    )


def scratch_rankers(schema, options):
    """``get(epochs=None, members=1)``: one ranker per ensemble size for every fit of a
    training run, reset between them (a fold's model is scored and dropped, the kept one
    copied out, before the next fits), so its Keras functions are traced once rather than once
    per fold. Never for a model that is kept."""
    from brainrank.ranker.learning.tfr_model import ListwiseRanker

    made: dict[int, ListwiseRanker] = {}

    def get(epochs: int | None = None, members: int = 1) -> ListwiseRanker:
        params = ranker_params(schema, options, epochs, members)
        if members not in made:
            made[members] = ListwiseRanker.create(len(schema.names), params)
            return made[members]
        return made[members].reset(params)

    return get
