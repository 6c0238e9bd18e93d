"""The brainrank ranking debugger (Streamlit).

    streamlit run debugger_ui/app.py -- --workspace DIR [--config FILE] [--queries F --qrels F]
        [--writable] [--allow-host NAME ...]

(from the repository root, whose ``.streamlit/config.toml`` binds loopback) or ``brainrank
ui``. The page, query, ranking and selected document live in the URL (see
``debugger_ui.state``); ``?q=refund+policy`` opens that query's ranking. Requests naming a
host the server does not answer as are refused, and nothing is written without
``--writable`` (see ``debugger_ui.access``).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import streamlit as st  # noqa: E402

from brainrank.debugger_ui import access, state  # noqa: E402
from brainrank.debugger_ui.loaders import Context  # noqa: E402
from brainrank.debugger_ui.views import compare, health, models, search, why_not  # noqa: E402
from brainrank.debugger_ui.views.common import pick_judgments  # noqa: E402
from brainrank.index.errors import BrainrankError  # noqa: E402
from brainrank.ranker.cli.ui_settings import parse_args  # noqa: E402

VIEWS = {
    "search": search.render,
    "why-not": why_not.render,
    "compare": compare.render,
    "models": models.render,
    "health": health.render,
}


def main() -> None:
    st.set_page_config(page_title="brainrank debugger", page_icon="🔎", layout="wide")
    settings = parse_args(sys.argv[1:])
    # Before anything is read: a refused request sees no document, model or query.
    refusal = access.host_refusal(
        st.context.headers.to_dict(), st.get_option("server.address"), settings.allow_hosts
    )
    if refusal:
        st.error(f"Request refused: {refusal}.")
        st.stop()
    state.view()
    page = state.choice(
        "page",
        "Page",
        list(state.PAGES),
        "search",
        format_func=state.PAGES.get,
        where=st.sidebar,
        radio=True,
    )
    try:
        ctx = Context(settings)
        judged = pick_judgments(ctx)  # the sidebar's picker: files given or the store's sets
    except BrainrankError as exc:  # a broken config or judgments file: say so, nothing else
        st.error(str(exc))
        state.publish()
        return
    if not ctx.workspace.root.is_dir():
        st.error(f"Workspace {ctx.workspace.root} does not exist; give --workspace another folder.")
        state.publish()
        return
    st.sidebar.caption(f"Workspace `{ctx.workspace.root}`")
    if not settings.writable:
        st.sidebar.caption(access.READ_ONLY)
    if judged is not None:
        st.sidebar.caption(f"{len(judged)} judged quer{'y' if len(judged) == 1 else 'ies'}")
    VIEWS[page](ctx)
    state.publish()


main()
