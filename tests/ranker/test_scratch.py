"""The ranker a training run fits follows its options, and the scratch ranker is reused."""

from __future__ import annotations

import numpy as np
import pytest

from brainrank.ranker.learning.features import FeatureSchema
from brainrank.ranker.learning.scratch import ranker_params, scratch_rankers
from brainrank.ranker.learning.train import TrainOptions


def test_options_reach_the_ranker_and_folds_share_one_scratch_ranker():
    schema = FeatureSchema.create(dense_weight=0.6, rrf_k=60)
    options = TrainOptions(hidden=(16,), dropout=0.3, l2=1e-3, seed=4, max_epochs=7)
    params = ranker_params(schema, options)
    assert (params.hidden, params.dropout, params.l2) == ((16,), 0.3, 1e-3)
    assert params.residual_feature == schema.index("fused")
    assert (params.seed, params.max_epochs) == (4, 7)
    assert ranker_params(schema, options, epochs=3).max_epochs == 3
    with pytest.raises(ValueError, match="hidden"):
        ranker_params(schema, TrainOptions(hidden=()))

    get = scratch_rankers(schema, options)
    first = get()
    x = np.random.default_rng(0).normal(size=(2, 5, len(schema.names))).astype(np.float32)
    untrained = first.score(x)
    again = get(epochs=2)
    assert again is first and again.params.max_epochs == 2
    # Reset to the initial weights: an untrained correction scores as before.
    np.testing.assert_allclose(again.score(x), untrained, rtol=1e-5, atol=1e-6)
