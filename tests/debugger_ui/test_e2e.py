"""`brainrank ui` for real: a server on a free port and a headless Chromium screenshot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.parse

import pytest

from tests.debugger_ui import browser
from tests.debugger_ui.conftest import QRELS, QUERIES

# Share of dark pixels: a blank Streamlit page has ~0, one showing only the form ~0.007,
# the results table 0.02-0.03.
INK = 0.012
# `brainrank ui` through the console script's entry point.
LAUNCHER = """
from brainrank.ranker.cli.app import app
app(prog_name="brainrank")
"""


def test_brainrank_ui_serves_a_page_with_results(ui_config, ui_engine, tmp_path):
    pytest.importorskip("streamlit", reason="the debugger needs the ui extra: pip install -e .[ui]")
    if browser.chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    port = browser.free_port()
    # BM25 keeps the server's first run short (no TensorFlow, encoder or model to load); the
    # learned pages are checked value by value through AppTest in test_pages.py.
    query, mode = "money back", "bm25"
    top = ui_engine.search(query, k=1, mode=mode).hits[0]
    title = ui_engine.store.get([top.doc_id])[top.doc_id].title
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "ui", "--workspace", str(ui_config.workspace)]
        + ["--queries", str(QUERIES), "--qrels", str(QRELS), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        browser.wait_http(base + "/_stcore/health", timeout=60)
        url = f"{base}/?{urllib.parse.urlencode({'q': query, 'mode': mode})}"
        png = tmp_path / "search.png"
        with browser.keep_open(url):  # warm: the first load starts the engine, ranks, explains
            dom = browser.wait_for_text(url, title, png, timeout=150)
        assert top.doc_id in dom and "nDCG@10" in dom  # a judged query: its metric is shown
        for _ in range(3):  # the DOM is dumped after the shot; a warm page draws within a try
            if browser.ink(png) > INK:
                break
            browser.capture(url, png)
        assert browser.ink(png) > INK, "the screenshot shows no results"
    finally:
        server.terminate()  # `brainrank ui` passes SIGTERM on to Streamlit
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    assert server.returncode == 0, (tmp_path / "server.log").read_text()[-3000:]
