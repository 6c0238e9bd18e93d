"""Learned query-term weights for BM25 (term-recall prediction), a probe for issue #15.

    .venv/bin/python bench/bench_term_weights.py [--collections scifact,nfcorpus-preprocessed]

Each query term's weight is its predicted *term recall*: the share of the query's relevant
documents that contain it (Zhao and Callan, CIKM 2010). A gradient-boosted regressor
(scikit-learn ``HistGradientBoostingRegressor``, 200 rounds, rate 0.05, 15 leaves, seed 0) is
fitted on the terms of the *train* judgments' queries. It predicts from term statistics
(``stats``: idf, log document frequency, count in the query, relative position, the query's
distinct terms, the term's share of the query's idf). ``+lists`` adds three features from the
query's own candidate lists: the share of the top 10 dense documents, of the top 10 BM25
documents and of all candidates that hold the term. The weighted BM25 score is
sum_t w_t * qtf_t * bm25_t(d).

Every ranking here orders the search's candidates (the top ``[retrieval] candidates`` of each
retriever). ``fused`` is the min-max fusion of BM25 and dense at ``[retrieval]
dense_weight``; ``w-fused`` fuses the weighted BM25 instead. Test nDCG@10 is printed on all
test queries and on the thirds split by the cosine of the nearest train query (pretrained
encoder), as ``bench_generalize.py --rows terciles`` splits them. The workspaces are
bench/.work/<collection> (``bench_learned.py`` builds them).
"""

from __future__ import annotations

import argparse
from datetime import date

import numpy as np
from bench_generalize import judged
from bench_learned import workspace
from common import machine, print_table

STATS = [0, 1, 2, 3, 4, 8]  # term-statistics columns of ``term_rows``


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--collections", default="scifact,nfcorpus-preprocessed")
    ap.add_argument("--datasets", default=None)
    args = ap.parse_args()
    rows = []
    for name in args.collections.split(","):
        rows += collection_rows(name, args.datasets)
    print(f"# bench_term_weights, {date.today()}: {machine()}")
    print_table(
        "Learned query-term weights for BM25: test nDCG@10",
        ["collection", "ranking", "all", "farthest third", "middle", "nearest"],
        rows,
    )


def collection_rows(name: str, datasets) -> list[list]:
    from sklearn.ensemble import HistGradientBoostingRegressor

    from brainrank.ranker.retrieval.fusion import minmax
    from brainrank.ranker.retrieval.search import SearchEngine

    cfg, _ = workspace(name, datasets)
    queries, train_qrels = judged(name, datasets, "train")
    test_queries, test_qrels = judged(name, datasets, "test")
    engine = SearchEngine(cfg)
    g, w_dense = engine.generation, cfg.retrieval.dense_weight
    position = {d: i for i, d in enumerate(g.doc_ids)}

    x, y = [], []
    for qid, rels in train_qrels.items():
        query = Query(engine, queries[qid])
        relevant = [position[d] for d, grade in rels.items() if grade > 0 and d in position]
        if query.unique and relevant:
            x.append(query.term_rows())
            y += [float((query.per_term[t][relevant] > 0).mean()) for t in query.unique]
    x, y = np.vstack(x), np.asarray(y)
    fit = dict(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=0)
    models = {
        "stats": (HistGradientBoostingRegressor(**fit).fit(x[:, STATS], y), STATS),
        "stats+lists": (HistGradientBoostingRegressor(**fit).fit(x, y), slice(None)),
    }

    encode = engine.encoder.encode
    train_vecs = np.asarray(encode([queries[q] for q in train_qrels]), np.float32)
    test_ids = sorted(test_qrels)
    test_vecs = np.asarray(encode([test_queries[q] for q in test_ids]), np.float32)
    order = np.argsort((test_vecs @ train_vecs.T).max(axis=1))
    third = {}
    for r, i in enumerate(order):
        third[test_ids[i]] = (
            "far" if r < len(order) // 3 else "mid" if r < 2 * len(order) // 3 else "near"
        )
    found: dict[str, dict[str, list[float]]] = {}
    for qid in test_ids:
        query = Query(engine, test_queries[qid])
        cand = query.cand
        b, d = cand.bm25.astype(np.float64), cand.dense.astype(np.float64)
        runs = {"bm25": b, "fused": minmax([b, d], [1 - w_dense, w_dense])}
        for label, (model, cols) in models.items():
            wb = query.weighted(model, cols)
            runs[f"w-bm25 ({label})"] = wb
            runs[f"w-fused ({label})"] = minmax([wb, d], [1 - w_dense, w_dense])
        ids = [g.doc_ids[p] for p in cand.positions]
        for label, scores in runs.items():
            ranked = [ids[i] for i in np.lexsort((cand.positions, -scores))]
            by = found.setdefault(label, {})
            by.setdefault(third[qid], []).append(ndcg10(ranked, test_qrels[qid]))
    engine.close()
    out = []
    for label, by in found.items():
        every = [v for vs in by.values() for v in vs]
        out.append(
            [name, label, float(np.mean(every))]
            + [float(np.mean(by[t])) for t in ("far", "mid", "near")]
        )
    return out


class Query:
    """One query's candidates and the BM25 score of each of its terms over the collection."""

    def __init__(self, engine, text: str):
        self.cand = engine.candidates(text, "hybrid")
        self.bm25 = engine.generation.bm25
        self.terms = self.bm25.term_ids(text)
        self.unique = list(dict.fromkeys(self.terms))
        self.per_term = {t: self.bm25.scores_for_terms([t]) for t in self.unique}

    def term_rows(self) -> np.ndarray:
        cand, unique = self.cand, self.unique
        idf, df = self.bm25.idf(unique), self.bm25.document_frequency(unique)
        dense_top = cand.positions[np.argsort(-cand.dense, kind="stable")[:10]]
        bm25_top = cand.positions[np.argsort(-cand.bm25, kind="stable")[:10]]
        rows = []
        for j, t in enumerate(unique):
            s = self.per_term[t]
            rows.append(
                [
                    idf[j],
                    np.log1p(df[j]),
                    self.terms.count(t),
                    j / max(len(unique) - 1, 1),
                    len(unique),
                    (s[dense_top] > 0).mean(),
                    (s[bm25_top] > 0).mean(),
                    (s[cand.positions] > 0).mean(),
                    idf[j] / idf.sum(),
                ]
            )
        return np.asarray(rows)

    def weighted(self, model, cols) -> np.ndarray:
        if not self.unique:
            return np.zeros(len(self.cand.positions))
        w = np.clip(model.predict(self.term_rows()[:, cols]), 0.02, 1.0)
        return sum(
            w[j] * self.terms.count(t) * self.per_term[t][self.cand.positions].astype(np.float64)
            for j, t in enumerate(self.unique)
        )


def ndcg10(ranked: list[str], rels: dict[str, int]) -> float:
    dcg = sum((2 ** rels.get(d, 0) - 1) / np.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(rels.values(), reverse=True)[:10]
    idcg = sum((2**grade - 1) / np.log2(i + 2) for i, grade in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


if __name__ == "__main__":
    main()
