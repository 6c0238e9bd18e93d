"""Judging for real: `brainrank ui --writable` in a headless Chromium driven like a person (a
click, then the keyboard), the grades read back by `brainrank judgments export`, and the next
`brainrank train` without --qrels learning from them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse

import pytest

from brainrank.debugger_ui.judgments import ui_query_id
from brainrank.debugger_ui.views.grading import UNJUDGED, grade_key
from brainrank.ranker.evaluation import read_qrels
from brainrank.ranker.feedback.judgments import JudgmentStore
from tests.debugger_ui import browser
from tests.debugger_ui.conftest import QRELS, QUERIES, copy_workspace
from tests.debugger_ui.test_e2e import LAUNCHER, start, stop

QUERY = "speaker for my tv"  # judged in no file: the first grade adds it to the set


def cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real `brainrank` command line in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLIT_", "BRAINRANK_"))}
    return subprocess.run(
        [sys.executable, "-c", LAUNCHER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def ui_grades(ws) -> dict[str, int]:
    with JudgmentStore.open(ws) as store:
        return store.judgments("default").qrels.get(ui_query_id(QUERY), {})


def wait_grade(ws, doc_id: str, grade: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while ui_grades(ws).get(doc_id) != grade:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{doc_id} never got grade {grade}: {ui_grades(ws)}")
        time.sleep(0.2)


def checked(page, doc_id: str):
    """The grade checked in the page for ``doc_id`` (None: none)."""
    return page.evaluate(
        f"(document.querySelector('.st-key-{grade_key(doc_id)} input:checked') || {{}}).value"
        " ?? null"
    )


def test_grades_given_in_the_browser_reach_export_and_the_next_training(
    sample_config, engine, tmp_path
):
    pytest.importorskip("streamlit", reason="the debugger needs Streamlit: pip install -e .")
    if browser.chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    ws = copy_workspace(sample_config, tmp_path / "ws").workspace
    res = cli("judgments", "import", QRELS, "--queries", QUERIES, "-w", ws)
    assert res.returncode == 0, res.stderr
    docs = [h.doc_id for h in engine.search(QUERY, k=10, mode="bm25").hits]
    port = browser.free_port()
    log = tmp_path / "server.log"
    # BM25 keeps the server light (no TensorFlow or encoder to load for the page).
    server = start(
        [sys.executable, "-c", LAUNCHER, "ui", "--writable", "--workspace", str(ws)]
        + ["--port", str(port)],
        log,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        browser.wait_http(base + "/_stcore/health", timeout=60)
        url = f"{base}/?{urllib.parse.urlencode({'q': QUERY, 'mode': 'bm25'})}"
        with browser.open_page(url) as page:
            first = f".st-key-{grade_key(docs[0])}"
            page.wait_for(f"document.querySelector('{first} input')", timeout=120)
            page.idle()
            unjudged = (
                "Array.from(document.querySelectorAll('[data-testid=stMarkdownContainer] span'))"
                f".filter(s => s.textContent.trim() === '{UNJUDGED}').length"
            )
            assert page.evaluate(unjudged) == 10

            # A click: the first result is highly relevant (3).
            page.evaluate(
                f"document.querySelectorAll('{first} label[data-testid=stRadioOption]')[3].click()"
            )
            wait_grade(ws, docs[0], 3)
            page.idle()
            assert checked(page, docs[0]) == "3"
            # The keyboard: Tab to the next result's grades, the arrow keys pick one.
            page.evaluate(f"document.querySelector('{first} input:checked').focus()")
            page.press("Tab", key_code=browser.KEYS["Tab"])
            page.press("ArrowRight", key_code=browser.KEYS["ArrowRight"])
            wait_grade(ws, docs[1], 1)
            page.idle()
            page.press("ArrowRight", key_code=browser.KEYS["ArrowRight"])  # changed: 1 -> 2
            wait_grade(ws, docs[1], 2)
            page.idle()
            page.press("Tab", key_code=browser.KEYS["Tab"])
            page.press("ArrowRight", key_code=browser.KEYS["ArrowRight"])
            wait_grade(ws, docs[2], 1)
            page.idle()
            assert [checked(page, d) for d in docs[:4]] == ["3", "2", "1", None]
            page.wait_for(f"({unjudged}) === 7", what="7 unjudged marks", timeout=30)
    finally:
        code = stop(server)
    assert code == 0, log.read_text()[-3000:]
    assert ui_grades(ws) == {docs[0]: 3, docs[1]: 2, docs[2]: 1}

    res = cli("judgments", "export", "-w", ws)
    assert res.returncode == 0, res.stderr
    qid = ui_query_id(QUERY)
    exported = set(res.stdout.splitlines())
    assert {f"{qid} 0 {docs[0]} 3", f"{qid} 0 {docs[1]} 2", f"{qid} 0 {docs[2]} 1"} <= exported
    qrels = read_qrels(QRELS)
    assert len(exported) == sum(len(g) for g in qrels.values()) + 3

    # The next training, with no --qrels, learns from the workspace's judgments: these too.
    # (A validation split stops training: the folds of the default would triple this test.)
    res = cli("train", "-w", ws, "--json", "--no-promote", "--early-stopping", "split", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    version = json.loads(res.stdout.strip().splitlines()[-1])["version"]
    meta = json.loads((ws / "models" / "versions" / version / "model.json").read_text())
    assert meta["training"]["judgment_source"] == {
        "sets": ["default"],
        "queries": len(qrels) + 1,
        "judgments": sum(len(g) for g in qrels.values()) + 3,
    }
