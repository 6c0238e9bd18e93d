import numpy as np

from ranker.domain import SUMMARY, DomainGate


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
