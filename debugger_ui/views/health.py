"""Health: how old the serving model and index are (drift checks land with the drift issue)."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from debugger_ui.loaders import Context
from debugger_ui.views.models import age


def render(ctx: Context) -> None:
    st.title("Health")
    champion = next((v for v in ctx.versions if v.version == ctx.champion), None)
    if champion is None:
        st.info(
            "No champion model: searches use the fixed modes. Train one with "
            "`brainrank train --queries FILE --qrels FILE` to track its age here."
        )
    else:
        now = datetime.now(UTC)
        days = (now - champion.created).total_seconds() / 86400
        cols = st.columns(3)
        cols[0].metric("Champion", champion.version)
        cols[1].metric("Trained", champion.created.strftime("%Y-%m-%d"))
        cols[2].metric("Model age", age(champion.created, now))
        st.caption(
            f"Trained {champion.created.strftime('%Y-%m-%d %H:%M UTC')}, {days:.2f} days ago."
        )
        training = champion.meta.get("training") or {}
        st.markdown(
            f"Trained on {training.get('judged_queries', '?')} judged queries "
            f"({training.get('train_queries', '?')} for training, "
            f"{training.get('holdout_queries', '?')} held out) and "
            f"{training.get('click_impressions', 0)} click impressions."
        )
    if ctx.generation is not None:
        manifest = ctx.workspace.manifest(ctx.generation)
        cols = st.columns(3)
        cols[0].metric("Index generation", ctx.generation)
        cols[1].metric("Documents", manifest.get("documents", "?"))
        built = manifest.get("created")
        if built:
            cols[2].metric("Index built", datetime.fromisoformat(built).strftime("%Y-%m-%d"))
    else:
        st.info("The workspace has no documents yet: run `brainrank ingest PATH`.")
    st.caption(
        "Feature drift and freshness checks will appear here with the freshness and drift issue."
    )
