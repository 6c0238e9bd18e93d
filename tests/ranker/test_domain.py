import numpy as np

from brainrank.ranker.learning.gates import SUMMARY, DomainGate


def test_gate_accepts_training_like_lists_and_names_what_is_out_of_range():
    rng = np.random.default_rng(0)
    train = rng.normal(loc=[0.5, 0.4, 0.6, 3.0, 1.5], scale=0.05, size=(500, len(SUMMARY)))
    gate = DomainGate.fit(train)
    inside = np.mean([gate.in_domain(row) for row in train])
    assert inside >= 0.97
    odd = np.array([0.95, 0.9, 0.6, 3.0, 1.5])  # the best matches are far closer than ever seen
    assert gate.outside(odd) == ["top_dense", "top10_dense"]
    assert not gate.in_domain(odd)
    assert gate.in_domain(np.array([0.95, 0.4, 0.6, 3.0, 1.5]))  # one statistic is tolerated


def test_gate_round_trip(tmp_path):
    gate = DomainGate.fit(np.random.default_rng(1).normal(size=(50, len(SUMMARY))))
    gate.save(tmp_path / "gate.json")
    assert DomainGate.load(tmp_path / "gate.json") == gate


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_query_gate_calibrated_on_validation_queries(tmp_path):
    from brainrank.ranker.learning.gates import QueryGate

    rng = np.random.default_rng(2)
    topic = rng.normal(size=32)
    train = unit(topic + 0.6 * rng.normal(size=(300, 32)))
    val = unit(topic + 0.6 * rng.normal(size=(100, 32)))
    gate = QueryGate.fit(train, val, quantile=0.05)
    nearest = (val @ train.T).max(axis=1)
    assert np.mean(nearest >= gate.threshold) == 0.95  # by construction of the quantile
    in_domain = unit(topic + 0.6 * rng.normal(size=(200, 32)))
    assert np.mean([gate.in_domain(q) for q in in_domain]) > 0.85
    elsewhere = unit(rng.normal(size=(200, 32)))  # another topic altogether
    assert np.mean([gate.in_domain(q) for q in elsewhere]) < 0.05
    gate.save(tmp_path)
    loaded = QueryGate.load(tmp_path)
    assert loaded.threshold == gate.threshold
    np.testing.assert_array_equal(loaded.vectors, gate.vectors)
    assert QueryGate.load(tmp_path / "missing") is None
