"""Every command through Typer's CliRunner, on real workspaces."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from brainrank.ranker.cli.app import app
from tests.conftest import DATA

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_commands():
    res = run("--help")
    assert res.exit_code == 0
    for cmd in ("ingest", "reindex", "search", "explain", "eval", "encoder"):
        assert cmd in res.output


def test_help_text_wraps_at_the_terminal_and_keeps_config_tables():
    # Docstrings are hard-wrapped in the source; --help rewraps them at the terminal's width
    # and shows "[segments]" (Rich markup would swallow it).
    res = runner.invoke(app, ["optimize", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert (
        "Ingests add a small segment per change and merge on their own ([segments] in the "
        "config); this merges everything now" in res.output
    )
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "Serve search, documents and feedback over HTTP, following ingests and promotions." in (
        res.output
    )


def test_search_json(sample_config):
    res = run("search", "car parts for sale", "-k", 3, "--json", "-w", sample_config.workspace)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(payload) == {"query", "mode", "model", "took_ms", "impression_id", "hits"}
    assert payload["mode"] == "hybrid" and len(payload["hits"]) == 3
    assert set(payload["hits"][0]) == {"rank", "id", "title", "score", "signals"}
    assert payload["impression_id"].isdigit()  # the CLI logs what it serves


def test_search_snippets(sample_config):
    ws = sample_config.workspace
    res = run("search", "gift card", "-k", 2, "--mode", "bm25", "--snippets", "--json", "-w", ws)
    assert res.exit_code == 0, res.output
    hits = json.loads(res.stdout.strip().splitlines()[-1])["hits"]
    snippets = [h["snippet"] for h in hits]
    for s in snippets:
        words = {s["text"][a:b].lower() for a, b in s["highlights"]}
        assert words and words <= {"gift", "gifts", "card", "cards"}, s
    # The table shows each snippet's words under the hit's title.
    res = runner.invoke(
        app,
        ["search", "gift card", "-k", "2", "--mode", "bm25", "--snippets", "-w", str(ws)],
        env={"COLUMNS": "400"},
    )
    assert res.exit_code == 0, res.output
    first = snippets[0]["text"].strip("…").split()
    assert " ".join(first[:4]) in res.stdout


def test_search_where(sample_config, sample_docs):
    ws = sample_config.workspace
    res = run(
        "search", "charger", "--mode", "hybrid", "--where", "price < 30", "--where",
        "timestamp >= 2024-01-01", "--json", "-w", ws,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["filters"] == ["price < 30", "timestamp >= 2024-01-01"]
    docs = {d.doc_id: d for d in sample_docs}
    assert len(payload["hits"]) == 10
    for h in payload["hits"]:
        doc = docs[h["id"]]
        assert doc.fields["price"] < 30 and doc.timestamp.year >= 2024, h["id"]
    res = runner.invoke(
        app,
        ["search", "charger", "--where", "price < 0", "-w", str(ws)],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    assert "no documents matched (where price < 0)" in res.stdout


def test_search_facets(sample_config):
    ws = str(sample_config.workspace)
    args = ["search", "charger", "--mode", "bm25", "--facet", "category", "-w", ws]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    counts = json.loads(res.stdout.strip().splitlines()[-1])["facets"]["category"]
    assert set(counts) <= {"help", "catalog"} and sum(counts.values()) > 0
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    shown = " · ".join(f"{v} {n}" for v, n in counts.items())
    assert f"category: {shown}" in res.stdout


def test_search_table(sample_config):
    res = run("search", "gift card", "-k", 2, "--mode", "bm25", "-w", sample_config.workspace)
    assert res.exit_code == 0, res.output
    assert "bm25 results for 'gift card'" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "   "], "query is empty"),
        (["search", "x" * 5000], "limit is 2000"),
        (["search", "refund", "--mode", "magic"], "unknown mode 'magic'"),
        (["search", "refund", "-k", "0"], "-k 0 is out of range"),
        (["search", "refund", "--where", "price <"], "write FIELD OP VALUE"),
        (["search", "--queries", DATA / "queries.jsonl", "--run", "x", "--facet", "a"], "--facet"),
        (["search", "refund", "--where", "size < 3"], "cannot filter on 'size'"),
        (["search", "refund", "-k", "1001"], "-k 1001 is out of range"),
        (["search"], "give a QUERY"),
        (["train", "--scorer", "gam", "--ensemble", "3"], "a GAM ranker is never averaged"),
        (["search", "refund", "--queries", DATA / "queries.jsonl"], "give a QUERY"),
        (["search", "--queries", DATA / "queries.jsonl"], "--queries needs --run"),
        (["search", "refund", "--run", "out.trec"], "--run goes with --queries"),
        (["search", "refund", "--server", "http://127.0.0.1:9"], "cannot reach"),
        (
            ["eval", "--queries", DATA / "queries.jsonl", "--qrels", DATA / "nope.txt"],
            "does not exist",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_1(sample_config, args, message):
    res = run(*args, "-w", sample_config.workspace)
    assert res.exit_code == 1
    assert message in res.output.replace("\n", "")
    assert "Traceback" not in res.output


def test_search_batch_writes_a_trec_run(sample_config, tmp_path):
    """A topics file in, a TREC run out, the ranking `search` gives each query, not logged."""
    from brainrank.ranker.evaluation import read_queries
    from brainrank.ranker.feedback.querylog import SOURCES, QueryLog

    def logged() -> int:
        if not QueryLog.exists(sample_config.workspace):
            return 0
        with QueryLog.open(sample_config.workspace) as log:
            return log.count(0, 2**40, sources=SOURCES)

    run_file = tmp_path / "runs" / "bm25.trec"
    run_file.parent.mkdir()
    before = logged()
    res = run(
        "search",
        "--queries",
        DATA / "queries.jsonl",
        "--run",
        run_file,
        "-k",
        5,
        "--mode",
        "bm25",
        "-w",
        sample_config.workspace,
    )
    assert res.exit_code == 0, res.output
    lines = [line.split() for line in run_file.read_text().splitlines()]
    queries = read_queries(DATA / "queries.jsonl")
    assert {row[0] for row in lines} <= set(queries) and all(len(r) == 6 for r in lines)
    assert {row[5] for row in lines} == {"brainrank-bm25"}
    assert logged() == before  # batch runs are not traffic
    qid = lines[0][0]
    single = json.loads(
        run(
            "search",
            queries[qid],
            "-k",
            5,
            "--mode",
            "bm25",
            "--json",
            "-w",
            sample_config.workspace,
        ).stdout.splitlines()[-1]
    )
    assert [r[2] for r in lines if r[0] == qid] == [h["id"] for h in single["hits"]]
    assert [int(r[3]) for r in lines if r[0] == qid] == list(range(1, len(single["hits"]) + 1))


def test_a_filtered_batch_run_holds_only_matching_documents(sample_config, sample_docs, tmp_path):
    run_file = tmp_path / "help.trec"
    res = run(
        "search", "--queries", DATA / "queries.jsonl", "--run", run_file, "-k", 20,
        "--mode", "hybrid", "--where", "category = help", "-w", sample_config.workspace,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    help_ids = {d.doc_id for d in sample_docs if d.tags.get("category") == "help"}
    found = [line.split()[2] for line in run_file.read_text().splitlines()]
    assert found and set(found) <= help_ids


def test_a_corrupt_query_log_does_not_stop_searches(sample_config, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(sample_config.workspace, ws)
    (ws / "logs").mkdir(exist_ok=True)
    for stale in (ws / "logs").glob("querylog.sqlite*"):
        stale.unlink()
    (ws / "logs" / "querylog.sqlite").write_bytes(b"not a database" * 100)
    res = run("search", "gift card", "--mode", "bm25", "--json", "-w", ws)
    assert res.exit_code == 0, res.output
    assert "search not logged" in res.stderr and "Traceback" not in res.output
    payload = json.loads(res.stdout.splitlines()[-1])
    assert payload["hits"] and payload["impression_id"] is None


def test_search_on_empty_workspace(tmp_path):
    res = run("search", "anything", "-w", tmp_path / "empty")
    assert res.exit_code == 1
    assert "no documents yet" in res.output


def test_eval_json_last_line(sample_config, tmp_path):
    res = run(
        "eval",
        "--queries",
        DATA / "queries.jsonl",
        "--qrels",
        DATA / "qrels-test.txt",
        "--mode",
        "bm25,dense",
        "--json",
        "--run-dir",
        tmp_path,
        "-w",
        sample_config.workspace,
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(metrics) == {"bm25", "dense"}
    assert set(metrics["bm25"]) == {"nDCG@10", "RR@10", "R@100", "AP", "latency_ms"}
    assert set(metrics["bm25"]["latency_ms"]) == {"p50", "p99"}
    assert (tmp_path / "run.dense.trec").exists()


def test_ingest_search_delete_cycle(tmp_path, encoder):
    ws = tmp_path / "ws"
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        '{"id": "x1", "title": "Automotive components store", "text": "Brake pads and filters."}\n'
        '{"id": "x2", "title": "Refund policy", "text": "Money back within 60 days."}\n'
        '{"id": "x3", "title": "Garden hoses", "text": "Hoses for watering lawns."}\n'
    )
    res = run("ingest", docs, "-w", ws)
    assert res.exit_code == 0, res.output
    assert "3 added" in res.output
    res = run("search", "refund", "--json", "-w", ws, "--mode", "bm25")
    assert json.loads(res.stdout.splitlines()[-1])["hits"][0]["id"] == "x2"
    res = run("ingest", "--delete", "x2", "-w", ws)
    assert res.exit_code == 0 and "1 deleted" in res.output
    res = run("search", "refund", "--json", "-w", ws, "--mode", "bm25")
    assert json.loads(res.stdout.splitlines()[-1])["hits"] == []


def test_ingest_bad_file_names_line_and_keeps_store(tmp_path, encoder):
    ws = tmp_path / "ws"
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": "a", "title": "Alpha", "text": "first document"}\n')
    assert run("ingest", good, "-w", ws).exit_code == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "b", "text": "fine"}\n{"id": "c", "text": \n')
    res = run("ingest", bad, "-w", ws)
    assert res.exit_code == 1 and "bad.jsonl line 2" in res.output
    res = run("ingest", bad, "--skip-bad", "-w", ws)
    assert res.exit_code == 0 and "1 skipped" in res.output
    res = run("search", "first document", "--json", "--mode", "bm25", "-w", ws)
    assert json.loads(res.stdout.splitlines()[-1])["hits"][0]["id"] == "a"


def test_ingest_needs_path_or_delete(tmp_path):
    res = run("ingest", "-w", tmp_path / "ws")
    assert res.exit_code == 1 and "give a PATH" in res.output


def test_models_list_show_and_learned_search(trained_config):
    ws = trained_config.workspace
    res = run("models", "list", "-w", ws)
    assert res.exit_code == 0, res.output
    assert "v0001" in res.stdout and "champion" in res.stdout
    res = run("models", "show", "champion", "-w", ws)
    meta = json.loads(res.stdout)
    assert meta["version"] == "v0001" and "challenger" in meta["metrics"]
    res = run("search", "gift card", "--json", "-k", 3, "-w", ws)
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["mode"] == "learned" and payload["model"] == "v0001"
    assert len(payload["hits"]) == 3


def test_models_errors_are_one_line(trained_config, tmp_path):
    ws = trained_config.workspace
    res = run("models", "promote", "v0042", "-w", ws)
    assert res.exit_code == 1 and "v0042" in res.output and "Traceback" not in res.output
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not an archive")
    res = run("models", "import", bad, "-w", ws)
    assert res.exit_code == 1 and "bad.tar.gz" in res.output


def test_train_rejects_unknown_scorer(trained_config):
    res = run(
        "train",
        "--queries",
        DATA / "queries.jsonl",
        "--qrels",
        DATA / "qrels-train.txt",
        "--scorer",
        "forest",
        "-w",
        trained_config.workspace,
    )
    assert res.exit_code == 1 and "unknown scorer 'forest'" in res.output


def test_reindex_with_the_pretrained_encoder_leaves_another_one(tmp_path):
    """What undoes `adapt` on a workspace without a champion: the index was embedded by another
    encoder (here a copy of MiniLM at another path) and `--encoder pretrained` re-embeds it."""
    import shutil

    from brainrank.index.workspace import Workspace
    from brainrank.ranker.config import load_config
    from brainrank.ranker.encoding.loading import serving_manifest

    stock = load_config(None, workspace=tmp_path / "x").encoder.resolved_path()
    other = tmp_path / "adapted"
    shutil.copytree(stock, other)
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(DATA.joinpath("docs.jsonl").read_text().splitlines(True)[:20]))
    ws = tmp_path / "ws"
    assert run("ingest", docs, "-w", ws, "--encoder", other).exit_code == 0
    assert serving_manifest(Workspace(ws))["encoder_path"] == str(other)
    res = run("reindex", "-w", ws)  # follows the serving index: the other encoder again
    assert res.exit_code == 0 and serving_manifest(Workspace(ws))["encoder_path"] == str(other)
    res = run("reindex", "-w", ws, "--encoder", "pretrained")
    assert res.exit_code == 0, res.output
    assert serving_manifest(Workspace(ws))["encoder_path"] == str(stock)
