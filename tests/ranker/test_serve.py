"""The HTTP service: a real `brainrank serve` process on a loopback port, driven with httpx.

Two servers per module: ``served`` (two workers, no token) over a copy of the trained sample
workspace, and ``guarded`` (one worker, a token from the environment, a configured log path)
over a copy of the sample workspace (no champion).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

import brainrank
from brainrank.ranker.cli.app import app as cli
from brainrank.ranker.feedback.querylog import QueryLog

TOKEN = "s3cret-token"
VOLATILE = ("took_ms", "impression_id")
JSON_TYPE = {"content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`brainrank serve` in a subprocess; its output goes to ``log``."""

    def __init__(self, workspace: Path, log: Path, *args: str, env: dict | None = None):
        self.workspace, self.log, self.port = workspace, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BRAINRANK_")}
        clean.pop("PROMETHEUS_MULTIPROC_DIR", None)
        clean["TF_CPP_MIN_LOG_LEVEL"] = "3"
        cmd = [sys.executable, "-c", "from brainrank.ranker.cli.app import main; main()"]
        cmd += ["serve", "-w", str(workspace), "--port", str(self.port), *args]
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=self._out, stderr=subprocess.STDOUT, env={**clean, **(env or {})}
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        """The server process and its children (uvicorn's workers), from Linux's /proc."""
        pids = {self.proc.pid}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:  # the parent's pid
                pids.add(int(stat.parent.name))
        return pids

    def wait_ready(self, workers: int = 1, timeout: float = 240.0) -> dict:
        """The first ready answer, once ``workers`` distinct workers have answered ready: each
        worker loads its engine on its own, and one may still answer 503 after another is up."""
        deadline = time.monotonic() + timeout
        ready: dict[int, dict] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=5)  # a new connection each time
                if r.status_code == 200:
                    ready.setdefault(r.json()["worker"], r.json())
                    if len(ready) >= workers:
                        return next(iter(ready.values()))
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        tail = self.output()[-3000:]
        pytest.fail(f"{len(ready)} of {workers} workers ready after {timeout}s:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def copy_workspace(cfg, tmp: Path) -> Path:
    """A copy of a session workspace without the query log other tests wrote into it."""
    ws = tmp / "ws"
    shutil.copytree(cfg.workspace, ws, ignore=shutil.ignore_patterns("querylog.sqlite*"))
    return ws


@pytest.fixture(scope="module")
def served(trained_config, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    server = Server(copy_workspace(trained_config, tmp), tmp / "server.log", "--workers", "2")
    try:
        server.wait_ready(workers=2)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api(served):
    """The Python API on the served workspace: the same rankings, for comparison."""
    with brainrank.open(served.workspace) as engine:
        yield engine


@pytest.fixture(scope="module")
def client(served):
    # No keep-alive: each request is a new connection, so both workers answer some.
    with httpx.Client(
        base_url=served.url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0)
    ) as c:
        yield c


def strip(payload: dict) -> dict:
    return {k: v for k, v in payload.items() if k not in VOLATILE}


def metric(client: httpx.Client, name: str, **labels) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def every_worker(client: httpx.Client, done, workers: int = 2, timeout: float = 10.0) -> float:
    """Seconds until ``done(readyz)`` held for the latest answer of each of ``workers`` worker
    processes (told apart by their pid); a worker that swapped never swaps back."""
    start = time.monotonic()
    latest: dict[int, dict] = {}
    while time.monotonic() - start < timeout:
        ready = client.get("/readyz").json()
        latest[ready["worker"]] = ready
        if len(latest) == workers and all(done(r) for r in latest.values()):
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"not every worker moved on within {timeout} s: {latest}")


def served_searches(ws: Path) -> int:
    with QueryLog.open(ws) as qlog:
        return qlog.count(sources=("service",))


# ----- reading -------------------------------------------------------------------------------


def test_health_and_readiness(served, client, api):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    generation = api.searcher.generation
    assert ready == {
        "model": api.searcher.registry.champion().version,
        "generation": int(generation.directory.name.removeprefix("gen-")),
        "documents": len(generation),
        "worker": ready["worker"],
    }
    assert ready["worker"] in served.worker_pids()
    assert served.output().count("preloaded") >= 2  # each worker read its files in first
    assert client.get("/docs").status_code == 200
    assert "/search" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    "request_body",
    [
        {"query": "wireless headphones battery"},  # learned: the champion ranks
        {"query": "refund for a broken toy", "k": 3, "mode": "bm25"},
        {"query": "laptop will not turn on", "k": 5, "mode": "dense"},
        {"query": "gift card", "k": 4, "mode": "hybrid-rrf"},
        {"query": "stacking blocks", "k": 2, "mode": "learned", "model": "latest"},
        {"query": "refund for a broken toy", "k": 3, "mode": "hybrid", "snippets": True},
        {"query": "charger", "k": 5, "where": ["price < 30", "rating >= 4"]},  # learned
        {"query": "charger", "k": 5, "offset": 5, "mode": "hybrid"},
        {"query": "charger", "k": 2, "facets": ["category"], "where": ["category = help"]},
    ],
)
def test_search_ranks_like_the_python_api(client, api, request_body):
    r = client.post("/search", json=request_body)
    assert r.status_code == 200, r.text
    got = r.json()
    args = {k: v for k, v in request_body.items() if k != "query"}
    want = api.search(request_body["query"], **args).to_dict()
    assert set(got) == set(want)
    assert got["impression_id"].isdigit()  # logged
    got_hits, want_hits = got.pop("hits"), want.pop("hits")
    assert strip(got) == strip(want)
    assert [(h["rank"], h["id"], h["title"]) for h in got_hits] == [
        (h["rank"], h["id"], h["title"]) for h in want_hits
    ]
    for g, w in zip(got_hits, want_hits, strict=True):
        assert g["score"] == pytest.approx(w["score"], rel=1e-5, abs=1e-6)
        assert g["signals"] == pytest.approx(w["signals"], rel=1e-5, abs=1e-6)
        assert g.get("snippet") == w.get("snippet")
        assert ("snippet" in g) == bool(request_body.get("snippets"))


@pytest.mark.parametrize(
    ("snippets", "where"), [(False, None), (True, None), (False, "price < 30")]
)
def test_the_cli_asks_the_service(served, api, snippets, where):
    """`brainrank search --server URL` prints what the service answers: the Python API's
    ranking, with snippets only when asked for, under the filters given."""
    from typer.testing import CliRunner

    from brainrank.ranker.cli.app import app

    args = ["search", "refund for a broken toy", "--server", served.url, "-k", "3"]
    args += ["--mode", "bm25", "--json"] + (["--snippets"] if snippets else [])
    args += ["--where", where, "--facet", "category"] if where else []
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout.strip().splitlines()[-1])
    query = "refund for a broken toy"
    facets = ["category"] if where else None
    want = api.search(
        query, k=3, mode="bm25", snippets=snippets, where=where, facets=facets
    ).to_dict()
    assert [h["id"] for h in got["hits"]] == [h["id"] for h in want["hits"]]
    assert [h.get("snippet") for h in got["hits"]] == [h.get("snippet") for h in want["hits"]]
    assert all(("snippet" in h) == snippets for h in got["hits"])
    assert got.get("filters") == want.get("filters") == ([where] if where else None)
    assert got.get("facets") == want.get("facets")
    assert ("facets" in got) == bool(where)
    assert got["impression_id"].isdigit()  # the service logged it


def test_document_by_id(client, api):
    doc = api.document("d001")
    got = client.get("/documents/d001").json()
    assert got == {
        "id": "d001",
        "title": doc.title,
        "text": doc.text,
        "timestamp": doc.timestamp.isoformat(),
        "fields": doc.fields,
        "tags": {"category": doc.tags["category"]},
    }


# ----- bad requests --------------------------------------------------------------------------

BAD = [
    ("post", "/search", {"json": {"query": ""}}, 400, "query is empty"),
    ("post", "/search", {"json": {"query": "   "}}, 400, "query is empty"),
    ("post", "/search", {"json": {"query": "x" * 2001}}, 400, "the limit is 2000"),
    ("post", "/search", {"json": {"k": 3}}, 400, "query: Field required"),
    ("post", "/search", {"json": {"query": 42}}, 400, "query:"),
    ("post", "/search", {"json": {"query": "toy", "k": 0}}, 400, "k: Input should be greater"),
    ("post", "/search", {"json": {"query": "toy", "k": 1001}}, 400, "k: Input should be less"),
    ("post", "/search", {"json": {"query": "toy", "k": "ten"}}, 400, "k:"),
    ("post", "/search", {"json": {"query": "toy", "mode": "magic"}}, 400, "unknown mode 'magic'"),
    ("post", "/search", {"json": {"query": "toy", "top_k": 3}}, 400, "top_k: Extra inputs"),
    ("post", "/search", {"json": {"query": "toy", "snippets": "yes"}}, 400, "snippets:"),
    ("post", "/search", {"json": {"query": "toy", "where": "price < 3"}}, 400, "where:"),
    ("post", "/search", {"json": {"query": "toy", "offset": -1}}, 400, "offset: Input should be"),
    ("post", "/search", {"json": {"query": "toy", "facets": ["size"]}}, 400, "cannot count 'size'"),
    ("post", "/search", {"json": {"query": "toy", "facets": "category"}}, 400, "facets:"),
    ("post", "/search", {"json": {"query": "toy", "offset": "5"}}, 400, "offset:"),
    (
        "post",
        "/search",
        {"json": {"query": "toy", "k": 20, "offset": 990}},
        400,
        "served up to rank 1000",
    ),
    ("post", "/search", {"json": {"query": "toy", "where": [3]}}, 400, "where.0:"),
    ("post", "/search", {"json": {"query": "toy", "where": ["price"]}}, 400, "FIELD OP VALUE"),
    (
        "post",
        "/search",
        {"json": {"query": "toy", "where": ["colour < 3"]}},
        400,
        "cannot filter on 'colour'",
    ),
    ("post", "/search", {"json": ["toy"]}, 400, "body"),
    ("post", "/search", {"content": b"{not json", "headers": JSON_TYPE}, 400, "not valid JSON"),
    ("post", "/search", {}, 400, "needs a JSON object body"),
    (
        "post",
        "/search",
        {"content": b'{"query": "caf\\ud800"}', "headers": JSON_TYPE},
        400,
        "the query is not valid Unicode",
    ),
    (
        "post",
        "/search",
        {"content": b'{"query": ' + b"[" * 30000 + b"]" * 30000 + b"}", "headers": JSON_TYPE},
        400,
        "body",
    ),
    ("post", "/search", {"json": {"query": "toy", "model": "v0999"}}, 404, "unknown model version"),
    ("get", "/documents/no-such-doc", {}, 404, "no document with id 'no-such-doc'"),
    ("get", "/nowhere", {}, 404, "Not Found"),
    ("get", "/search", {}, 405, "Method Not Allowed"),
    ("post", "/feedback", {"json": {"impression_id": "1", "clicks": []}}, 400, "clicks:"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "message"), BAD)
def test_bad_request_is_a_json_error(client, method, path, kwargs, status, message):
    r = client.request(method.upper(), path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and message in body["error"], body
    assert "\n" not in body["error"] and "Traceback" not in r.text


def test_body_over_64_kb_is_413(served, client):
    big = json.dumps({"query": "x" * (70 * 1024)}).encode()
    r = client.post("/search", content=big, headers=JSON_TYPE)
    assert r.status_code == 413 and "64 KB" in r.json()["error"]

    def chunks():  # no Content-Length: the size is only known as the body streams in
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    r = client.post("/search", content=chunks(), headers=JSON_TYPE)
    assert r.status_code == 413 and "64 KB" in r.json()["error"]
    assert client.get("/healthz").status_code == 200 and served.proc.poll() is None


# ----- feedback and the query log ------------------------------------------------------------


def test_feedback_is_stored_as_brainrank_feedback_stores_it(served, client, tmp_path):
    hit = client.post("/search", json={"query": "stacking blocks", "k": 3}).json()
    impression, shown = hit["impression_id"], [h["id"] for h in hit["hits"]]
    with sqlite3.connect(served.workspace / "logs" / "querylog.sqlite") as db:
        logged = db.execute(
            "SELECT s.source, s.mode, r.doc_ids, length(r.features) > 0 FROM searches s "
            "JOIN results r ON r.search_id = s.id WHERE s.id = ?",
            (int(impression),),
        ).fetchone()
    assert logged == ("service", "learned", json.dumps(shown), 1)  # with its feature rows
    click = {"impression_id": impression, "clicks": shown[:2], "time": "2026-10-03T14:22:05Z"}
    r = client.post("/feedback", json=click)
    assert r.status_code == 200, r.text
    assert r.json() == {"imported": 2, "duplicates": 0}
    # The same clicks as a `brainrank feedback` file: already there, nothing added.
    lines = [{"impression_id": impression, "doc_id": d, "time": click["time"]} for d in shown[:2]]
    path = tmp_path / "clicks.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with QueryLog.open(served.workspace) as qlog:
        report = qlog.import_feedback(path)
    assert (report.imported, report.duplicates) == (0, 2)
    wrong = [
        ({**click, "clicks": ["d-not-shown"]}, "was not shown"),
        ({**click, "impression_id": "99999999"}, "not in the query log"),
        ({**click, "time": "yesterday"}, "bad time 'yesterday'"),
    ]
    for body, message in wrong:
        r = client.post("/feedback", json=body)
        assert r.status_code == 400 and message in r.json()["error"], r.text


def test_a_locked_log_never_fails_a_search(served, client):
    failures = metric(client, "brainrank_querylog_failures_total")
    path = served.workspace / "logs" / "querylog.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, held past the service's 2 s wait
    try:
        r = client.post("/search", json={"query": "gift card", "k": 2})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.status_code == 200 and r.json()["impression_id"] is None
    assert len(r.json()["hits"]) == 2
    assert metric(client, "brainrank_querylog_failures_total") == failures + 1
    assert "search answered but not logged" in served.output()
    assert client.post("/search", json={"query": "gift card"}).json()["impression_id"]


# ----- hot swap ------------------------------------------------------------------------------


def test_ingest_in_another_process_is_served_within_3_s(served, client, api):
    before = client.get("/readyz").json()
    statuses: list[int] = []
    stop = threading.Event()

    def keep_searching():
        with httpx.Client(base_url=served.url, timeout=60) as c:
            while not stop.is_set():
                statuses.append(c.post("/search", json={"query": "laptop battery"}).status_code)

    background = threading.Thread(target=keep_searching)
    background.start()
    doc = {"id": "new/doc 1?", "title": "Zyxquor kite", "text": "A zyxquor kite for windy days."}
    try:
        api.ingest([doc])
        elapsed = every_worker(client, lambda r: r["generation"] > before["generation"])
        for _ in range(4):  # each worker, whichever answers, now finds it
            r = client.post("/search", json={"query": "zyxquor kite", "k": 3, "mode": "bm25"})
            statuses.append(r.status_code)
            assert doc["id"] in [h["id"] for h in r.json()["hits"]]
    finally:
        stop.set()
        background.join()
    print(f"hot swap: every worker served the new generation {elapsed:.2f}s after ingest returned")
    assert elapsed < 3.0, elapsed
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    after = client.get("/readyz").json()
    assert after["generation"] > before["generation"]
    assert after["documents"] == before["documents"] + 1
    got = client.get("/documents/" + quote(doc["id"], safe=""))
    assert got.status_code == 200 and got.json()["title"] == "Zyxquor kite"


def test_promotion_in_another_process_is_served(served, client, api, tmp_path):
    from brainrank.ranker.registry.registry import Registry

    registry = Registry(served.workspace / "models")
    archive = registry.export(registry.champion().version, tmp_path)
    res = CliRunner().invoke(
        cli, ["models", "import", str(archive), "--promote", "-w", str(served.workspace)]
    )
    assert res.exit_code == 0, res.output
    new = registry.champion().version
    elapsed = every_worker(client, lambda r: r["model"] == new)
    assert elapsed < 3.0, elapsed
    for _ in range(4):  # whichever worker answers
        assert client.post("/search", json={"query": "gift card"}).json()["model"] == new
    assert metric(client, "brainrank_model_info", version=new) == 1


# ----- metrics -------------------------------------------------------------------------------


def test_metrics_count_every_request_and_the_log_agrees(served, client):
    ok = metric(client, "brainrank_requests_total", endpoint="/search", status="200")
    failures = metric(client, "brainrank_querylog_failures_total")
    assert ok > 0
    assert served_searches(served.workspace) == ok - failures
    assert metric(client, "brainrank_requests_total", endpoint="/search", status="400") >= 10
    assert metric(client, "brainrank_request_errors_total", endpoint="/search", status="413") == 2
    assert metric(client, "brainrank_requests_total", endpoint="/documents/{doc_id:path}") >= 2
    assert metric(client, "brainrank_search_seconds_count", mode="learned") >= 1
    ready = client.get("/readyz").json()
    assert metric(client, "brainrank_index_generation") == ready["generation"]
    assert metric(client, "brainrank_model_info", version=ready["model"]) == 1
    assert served.proc.poll() is None  # no bad request took a worker down


# ----- a token, a configured log path, a log that cannot be opened ----------------------------


@pytest.fixture(scope="module")
def guarded(sample_config, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guarded")
    ws = copy_workspace(sample_config, tmp)
    config = tmp / "brainrank.toml"
    config.write_text('[service]\nlog_path = "replica-a.sqlite"\n')
    (ws / "replica-a.sqlite").write_bytes(b"this is not a database\n" * 200)
    args = ("--workers", "1", "--config", str(config))
    server = Server(ws, tmp / "server.log", *args, env={"BRAINRANK_TOKEN": TOKEN})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_token_log_path_and_an_unreadable_log(guarded):
    c = httpx.Client(base_url=guarded.url, timeout=60)
    assert c.get("/readyz").json()["model"] is None  # no champion: hybrid, learned is a 404
    r = c.post("/search", json={"query": "gift card", "mode": "learned"})
    assert r.status_code == 404 and "no learned model yet: train one" in r.json()["error"]
    # The configured log is corrupt: searches are answered, unlogged, and counted.
    r = c.post("/search", json={"query": "gift card", "k": 2})
    assert r.status_code == 200 and r.json()["impression_id"] is None
    assert metric(c, "brainrank_querylog_failures_total") == 1
    assert "search answered but not logged" in guarded.output()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = c.post("/feedback", json={"impression_id": "1", "clicks": ["d001"]}, headers=auth)
    assert r.status_code == 503 and "query log is unavailable" in r.json()["error"]
    # Once the file is gone the log is created again and searches are logged there.
    (guarded.workspace / "replica-a.sqlite").unlink()
    hit = c.post("/search", json={"query": "gift card", "k": 2}).json()
    assert hit["impression_id"] == "1"
    assert not (guarded.workspace / "logs" / "querylog.sqlite").exists()
    with QueryLog(guarded.workspace / "replica-a.sqlite") as qlog:
        assert qlog.count(sources=("service",)) == 1
    click = {"impression_id": hit["impression_id"], "clicks": [hit["hits"][0]["id"]]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = c.post("/feedback", json=click, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "Bearer <token>" in r.json()["error"]
    r = c.post("/feedback", json=click, headers=auth)
    assert r.status_code == 200 and r.json()["imported"] == 1
    assert c.get("/documents/d001").status_code == 200  # reads stay open
    c.close()


def test_not_ready_is_503(tmp_path):
    from fastapi.testclient import TestClient

    from brainrank.ranker.config import load_config
    from brainrank.ranker.serve.app import create_app

    cfg = load_config(workspace=tmp_path / "empty", env={})
    with TestClient(create_app(cfg)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["error"].startswith("not ready:")
        assert c.post("/search", json={"query": "toy"}).status_code == 503
        assert c.get("/documents/d001").status_code == 503
        assert c.get("/healthz").status_code == 200
    assert not (tmp_path / "empty").exists()  # a service never creates a workspace


# ----- the command line ----------------------------------------------------------------------


def test_refuses_a_public_address_without_a_token(sample_config, monkeypatch):
    monkeypatch.delenv("BRAINRANK_TOKEN", raising=False)
    port = free_port()
    ws = str(sample_config.workspace)
    res = CliRunner().invoke(cli, ["serve", "-w", ws, "--host", "0.0.0.0", "--port", str(port)])
    assert res.exit_code == 1
    assert "refusing to listen on 0.0.0.0 without a token" in res.output.replace("\n", " ")
    with socket.socket() as s:  # nothing was bound
        s.bind(("127.0.0.1", port))
    res = CliRunner().invoke(cli, ["serve", "-w", ws, "--workers", "0"])
    assert res.exit_code == 1 and "--workers must be at least 1" in res.output
