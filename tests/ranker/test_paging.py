"""Pages of a ranking (``offset``): the engine, the CLI and the log agree on ranks."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from brainrank.index.errors import InputError
from brainrank.ranker.cli.app import app


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid", "hybrid-rrf"])
def test_pages_are_slices_of_one_ranking(engine, mode):
    whole = engine.search("how do I return an item for a refund", k=30, mode=mode)
    pages = [
        engine.search("how do I return an item for a refund", k=10, mode=mode, offset=offset)
        for offset in (0, 10, 20)
    ]
    assert [len(p.hits) for p in pages] == [10, 10, 10]
    assert pages[1].offset == 10 and pages[1].to_dict()["offset"] == 10
    got = [(h.doc_id, h.rank, h.score) for p in pages for h in p.hits]
    assert got == [(h.doc_id, h.rank, h.score) for h in whole.hits]
    assert [h.rank for h in pages[2].hits] == list(range(21, 31))
    assert "offset" not in pages[0].to_dict()


def test_a_filtered_learned_ranking_pages_too(trained_config, encoder):
    from brainrank.ranker.retrieval.search import SearchEngine

    engine = SearchEngine(trained_config, encoder=encoder)
    try:
        whole = engine.search("phone charger", k=12, where="price < 40")
        page = engine.search("phone charger", k=6, where="price < 40", offset=6)
        assert whole.mode == page.mode == "learned"
        assert [h.doc_id for h in page.hits] == [h.doc_id for h in whole.hits[6:]]
        assert (page.features == whole.features[6:]).all()
    finally:
        engine.close()


def test_a_page_past_the_candidates_is_empty_and_bad_offsets_are_errors(engine):
    assert engine.search("gift card", k=10, mode="bm25", offset=990).hits == []
    with pytest.raises(InputError, match="offset must be 0 or more"):
        engine.search("gift card", offset=-1)
    with pytest.raises(InputError, match="offset \\+ k is 1001; a ranking is served up to"):
        engine.search("gift card", k=11, offset=990)


def test_the_cli_shows_and_logs_the_second_page(sample_config):
    from brainrank.ranker.feedback.querylog import QueryLog

    ws = str(sample_config.workspace)
    runner = CliRunner()
    args = ["search", "gift card", "-k", "3", "--mode", "bm25", "--json", "-w", ws]
    first = runner.invoke(app, args)
    second = runner.invoke(app, [*args, "--offset", "3"])
    assert first.exit_code == second.exit_code == 0, second.output
    a, b = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (first, second))
    assert [h["rank"] for h in b["hits"]] == [4, 5, 6] and b["offset"] == 3
    assert not {h["id"] for h in a["hits"]} & {h["id"] for h in b["hits"]}
    with QueryLog.open(sample_config.workspace) as log:
        rows = [
            r for r in log.impressions(0, 2**40) if r["impression_id"].endswith(b["impression_id"])
        ]
    assert rows and rows[-1].get("first_position") == 4
    table = runner.invoke(app, [*args[:-3], "--offset", "900", "-w", ws], env={"COLUMNS": "200"})
    assert "no more results (after the first 900)" in table.stdout, table.output
    for bad, message in (
        (["--offset", "998"], "--offset 998 with -k 3 is out of range"),
        (["--offset", "-1"], "out of range"),
    ):
        res = runner.invoke(app, [*args, *bad])
        assert res.exit_code == 1 and message in res.output.replace("\n", ""), res.output


def test_click_dcg_keeps_a_later_page_at_its_positions(trained_config, encoder):
    """A click on a page that starts at position 11 is weighed by position 11's propensity
    and discounted at its place in the whole ranking, and counts only in a deep enough DCG."""
    import math

    import numpy as np

    from brainrank.ranker.monitoring.retrain import click_dcg
    from brainrank.ranker.retrieval.search import SearchEngine

    engine = SearchEngine(trained_config, encoder=encoder)
    try:
        version = engine.champion().version
        top = [h.doc_id for h in engine.search("phone charger", k=2, model=version).hits]
        shown = [top[1], top[0]]  # logged in the other order; the model puts top[0] first
        imp = {"query": "phone charger", "shown": shown, "clicks": [top[0]]}
        page = {**imp, "first_position": 11}
        prop = 1.0 / np.arange(1, 21)
        assert click_dcg(engine, [imp], version, prop, k=20) == pytest.approx(
            1 / prop[1] / math.log2(1 + 1)
        )
        assert click_dcg(engine, [page], version, prop, k=20) == pytest.approx(
            1 / prop[11] / math.log2(1 + 11)
        )
        assert click_dcg(engine, [page], version, prop, k=10) == 0.0
    finally:
        engine.close()
