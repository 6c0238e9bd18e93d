"""``brainrank explain``: the learned ranking's attributions in the terminal, on the real
trained sample workspace (real index, encoder and ranker, real SHAP)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from brainrank.ranker.cli.app import app

QUERY = "money back"
ALL_FEATURES = 25

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def explained(ws, *args) -> dict:
    res = run("explain", QUERY, "--json", "-w", ws, *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def learned_top(trained_config, encoder):
    from brainrank.ranker.retrieval.search import SearchEngine

    engine = SearchEngine(trained_config, encoder=encoder)
    return engine.search(QUERY, k=1000, mode="learned")


def test_top_results_and_contributions_that_add_up_to_each_score(trained_config, learned_top):
    payload = explained(trained_config.workspace, "-k", 4, "--features", ALL_FEATURES)
    assert payload["model"] == "v0001" and payload["in_domain"] is True
    assert [r["id"] for r in payload["results"]] == [h.doc_id for h in learned_top.hits[:4]]
    for r, hit in zip(payload["results"], learned_top.hits, strict=False):
        assert r["score"] == pytest.approx(hit.score, rel=1e-6)
        contributions = [c["contribution"] for c in r["contributions"]]
        assert len(contributions) == ALL_FEATURES
        # Every feature's SHAP value plus the base value is the score served.
        assert payload["base_value"] + sum(contributions) == pytest.approx(hit.score, abs=1e-4)
        sizes = [abs(c) for c in contributions]
        assert sizes == sorted(sizes, reverse=True)
    # --features keeps the largest ones.
    few = explained(trained_config.workspace, "-k", 1, "--features", 3)["results"][0]
    assert few["contributions"] == payload["results"][0]["contributions"][:3]


def test_a_document_below_is_compared_with_the_rank_asked_for(trained_config, learned_top):
    target, above = learned_top.hits[5], learned_top.hits[1]
    payload = explained(
        trained_config.workspace,
        "-k",
        1,
        "--doc",
        target.doc_id,
        "--against",
        2,
        "--features",
        ALL_FEATURES,
    )
    d = payload["document"]
    assert d["final_rank"] == 6 and d["candidate"] and d["failed_filters"] == []
    assert d["bm25_list_rank"] == target.signals.get("bm25_rank")
    assert d["dense_list_rank"] == target.signals.get("dense_rank")
    vs = d["against"]
    assert (vs["rank"], vs["id"]) == (2, above.doc_id)
    assert vs["gap"] == pytest.approx(target.score - above.score, abs=1e-4)
    differences = [x["difference"] for x in vs["differences"]]
    assert sum(differences) == pytest.approx(vs["gap"], abs=1e-4)
    assert differences == sorted(differences)  # what holds it below most comes first

    text = run("explain", QUERY, "-w", trained_config.workspace, "--doc", target.doc_id)
    assert text.exit_code == 0, text.output
    assert (
        "holding it below" in text.stdout
        and f"against rank 1, {learned_top.hits[0].doc_id}" in (text.stdout)
    )


def test_a_document_the_filters_remove_names_the_condition(trained_config, encoder):
    from brainrank.ranker.retrieval.search import SearchEngine

    engine = SearchEngine(trained_config, encoder=encoder)
    _, allowed = engine.filter_mask(["category = catalog"])
    ids = engine.generation.doc_ids
    hits = engine.search(QUERY, k=20, mode="learned").hits
    removed = next(h.doc_id for h in hits if not allowed[ids.index(h.doc_id)])
    ws = trained_config.workspace
    payload = explained(ws, "--doc", removed, "--where", "category = catalog")
    assert payload["filters"] == ["category = catalog"]
    assert all(allowed[ids.index(r["id"])] for r in payload["results"])
    d = payload["document"]
    assert d["failed_filters"] == ["category = catalog"] and not d["candidate"]
    assert d["final_rank"] is None and d["contributions"] == []
    text = run("explain", QUERY, "-w", ws, "--doc", removed, "--where", "category = catalog")
    assert "does not meet category = catalog" in text.stdout
    # Its collection ranks count the documents that meet the filter, as if it were one.
    assert (
        f"(rank {d['dense_collection_rank']} among the documents meeting the filters, were it"
        in " ".join(text.stdout.split())
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--doc", "no-such-doc"], "no document 'no-such-doc'"),
        (["--doc", "@6", "--against", "6"], "compare it with a rank from 1 to 5, not 6"),
        (["-k", "0"], "k must be at least 1"),
        (["--where", "colour = red"], "cannot filter on 'colour'"),
        (["--model", "v0042"], "v0042"),
    ],
)
def test_bad_input_is_one_line(trained_config, learned_top, args, message):
    args = [learned_top.hits[5].doc_id if a == "@6" else a for a in args]
    res = run("explain", QUERY, "-w", trained_config.workspace, *args)
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output


def test_without_a_model_it_says_how_to_get_one(sample_config):
    res = run("explain", QUERY, "-w", sample_config.workspace)
    assert res.exit_code == 1 and "train" in res.output and "Traceback" not in res.output


def test_a_query_the_gates_sent_back_is_flagged(trained_config):
    out_of_domain = "the of and"  # no indexable term: the gates send it back to the fusion
    res = run("explain", out_of_domain, "--json", "-w", trained_config.workspace)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["in_domain"] is False
    res = run("explain", out_of_domain, "-w", trained_config.workspace)
    assert res.exit_code == 0 and "sent this query back to the fusion" in res.output
