"""The brainrank ranking debugger (Streamlit).

    streamlit run debugger_ui/app.py -- --workspace DIR [--config FILE] [--queries F --qrels F]

or ``brainrank ui``. The page, query, ranking and selected document live in the URL
(see ``debugger_ui.state``); ``?q=refund+policy`` opens that query's ranking.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import streamlit as st  # noqa: E402

from brainrank.debugger_ui import state  # noqa: E402
from brainrank.debugger_ui.loaders import Context  # noqa: E402
from brainrank.debugger_ui.views import compare, health, models, search, why_not  # noqa: E402
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
    settings = parse_args(sys.argv[1:])
    try:
        ctx = Context(settings)
        judged = ctx.judged
    except BrainrankError as exc:  # a broken config or judgments file: say so, nothing else
        st.error(str(exc))
        state.publish()
        return
    st.sidebar.caption(f"Workspace `{ctx.workspace.root}`")
    if judged is not None:
        st.sidebar.caption(f"{len(judged)} judged queries from `{settings.queries.name}`")
    VIEWS[page](ctx)
    state.publish()


main()
