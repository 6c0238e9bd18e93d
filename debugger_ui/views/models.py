"""Models: registry versions with metrics, training data and age; promote and roll back
(only when the debugger was started with ``--writable``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from brainrank.debugger_ui import state
from brainrank.debugger_ui.access import READ_ONLY, require_writable
from brainrank.debugger_ui.loaders import Context
from brainrank.index.errors import BrainrankError
from brainrank.ranker.learning.decision import model_warnings

_PENDING = "models_pending_action"
_FLASH = "models_flash"
_CONFIRMED = "models_confirmed_action"


def age(created: datetime, now: datetime | None = None) -> str:
    """``3d 4h`` style age of a timestamp."""
    delta = (now or datetime.now(UTC)) - created
    return f"{delta.days}d {delta.seconds // 3600}h"


def versions_frame(ctx: Context) -> pd.DataFrame:
    rows = []
    for mv in sorted(ctx.versions, key=lambda v: -v.number):
        metrics = mv.metrics
        training = mv.meta.get("training") or {}
        options = mv.meta.get("options") or {}
        incumbent = "champion" if "champion" in metrics else "hybrid"
        rows.append(
            {
                "version": mv.version,
                "champion": "★" if mv.version == ctx.champion else "",
                "created": mv.created.strftime("%Y-%m-%d %H:%M"),
                "age": age(mv.created),
                "scorer": options.get("scorer", "?"),
                "nDCG@10": (metrics.get("challenger") or {}).get("nDCG@10"),
                "vs": incumbent,
                "vs nDCG@10": (metrics.get(incumbent) or {}).get("nDCG@10"),
                "judged queries": training.get("judged_queries"),
                "train queries": training.get("train_queries"),
                "holdout queries": training.get("holdout_queries"),
                "click impressions": training.get("click_impressions"),
                "epochs": (training.get("ranker") or {}).get("epochs"),
                "encoder": ("fine-tuned " if (mv.meta.get("encoder") or {}).get("bundled") else "")
                + str((mv.meta.get("encoder") or {}).get("name", "?")),
            }
        )
    return pd.DataFrame(rows)


def _best_validation(ranker: dict) -> float | None:
    """The validation split's best nDCG@10, or the cross-validated curve's peak."""
    if ranker.get("best_val_ndcg10") is not None:
        return ranker["best_val_ndcg10"]
    return max(ranker["curve"]) if ranker.get("curve") else None


def training_frame(training: dict) -> pd.DataFrame:
    """What a version learned from, one row per fact."""
    ranker = training.get("ranker") or {}
    facts = {
        "judged queries": training.get("judged_queries"),
        "train / validation / held-out queries": "{} / {} / {}".format(
            training.get("train_queries", "?"),
            training.get("val_queries", "?"),
            training.get("holdout_queries", "?"),
        ),
        "judged pairs": training.get("judged_pairs"),
        "click impressions": training.get("click_impressions"),
        "click-only queries": training.get("click_only_queries"),
        "epochs (best)": f"{ranker.get('epochs', '?')} ({ranker.get('best_epoch', '?')})",
        "early stopping": (
            f"{ranker['folds']}-fold cross-validation"
            if ranker.get("early_stopping") == "cross-validation"
            else "validation split"
        ),
        "best validation nDCG@10": _rounded(_best_validation(ranker)),
        "training seconds": training.get("seconds"),
    }
    return pd.DataFrame(
        {"": list(facts), "value": ["" if v is None else str(v) for v in facts.values()]}
    )


def render(ctx: Context) -> None:
    st.title("Models")
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        st.success(flash)
    if not ctx.versions:
        st.info(
            "No model versions yet: searches use the fixed modes. Train one with "
            "`brainrank train --queries FILE --qrels FILE --workspace DIR`."
        )
        return
    st.metric("Champion", ctx.champion or "none")
    st.dataframe(versions_frame(ctx), hide_index=True)
    for problem in ctx.registry.problems:
        st.warning(problem)
    names = [v.version for v in sorted(ctx.versions, key=lambda v: -v.number)]
    chosen = state.choice("model", "Version", names, ctx.champion or names[0], widget="_models")
    mv = next(v for v in ctx.versions if v.version == chosen)
    for warning in model_warnings(mv.meta):
        st.warning(f"{mv.version}: {warning}")
    recorded = mv.meta.get("promotion")
    if recorded and recorded.get("comparisons"):
        st.caption(f"Promotion check ({recorded['method']}): {recorded['reason']}")
    left, right = st.columns(2)
    left.markdown(f"**{mv.version}** held-out metrics (at training time)")
    left.dataframe(pd.DataFrame(mv.metrics).T.rename_axis("ranking").reset_index(), hide_index=True)
    right.markdown("**Training data**")
    right.dataframe(training_frame(mv.meta.get("training") or {}), hide_index=True)
    _actions(ctx, mv.version)


def _actions(ctx: Context, chosen: str) -> None:
    # Buttons only set state in callbacks (which run once per click, before the script);
    # the action itself runs in the script body, where a spinner and errors can be shown.
    st.subheader("Promote or roll back")
    if not ctx.writable:
        st.info(READ_ONLY)
    confirmed = st.session_state.pop(_CONFIRMED, None)
    if confirmed:
        action, version = confirmed
        try:
            with st.spinner(f"{action.capitalize()}…"):
                message = _run(ctx, action, version)
        except BrainrankError as exc:
            st.error(str(exc))
        else:
            st.session_state[_FLASH] = message
            state.navigate(model=None)
    pending = st.session_state.get(_PENDING) if ctx.writable else None
    cols = st.columns(2)
    cols[0].button(
        f"Promote {chosen}…",
        key="w_promote",
        disabled=chosen == ctx.champion or bool(pending) or not ctx.writable,
        on_click=_ask,
        args=("promote", chosen),
    )
    cols[1].button(
        "Roll back…",
        key="w_rollback",
        disabled=not ctx.champion or bool(pending) or not ctx.writable,
        on_click=_ask,
        args=("rollback", ctx.champion),
    )
    if not pending:
        return
    action, version = pending
    if action == "promote":
        st.warning(
            f"Promote **{version}** to champion, replacing {ctx.champion or 'no champion'}? "
            "Searches in the learned mode switch to it at once (the collection is re-embedded "
            "first if its encoder differs)."
        )
    else:
        st.warning(
            f"Roll back from **{version}** to the previous champion in the promotion history?"
        )
    cols = st.columns(2)
    cols[0].button(f"Confirm {action}", key="w_confirm", type="primary", on_click=_confirm)
    cols[1].button("Cancel", key="w_cancel", on_click=_cancel)


def _ask(action: str, version: str) -> None:
    st.session_state[_PENDING] = (action, version)


def _confirm() -> None:
    st.session_state[_CONFIRMED] = st.session_state.pop(_PENDING, None)


def _cancel() -> None:
    st.session_state.pop(_PENDING, None)


def _run(ctx: Context, action: str, version: str) -> str:
    """Promote ``version`` or roll back; refused (``ReadOnlyError``) unless writable, whatever
    the browser sent."""
    from brainrank.ranker.registry.promotion import promote, rollback

    what = f"promote {version}" if action == "promote" else f"roll back from {version}"
    require_writable(ctx.writable, what)
    if action == "promote":
        mv = promote(ctx.cfg, version)
        return f"{mv.version} is now the champion."
    mv = rollback(ctx.cfg)
    return f"Rolled back: {mv.version} is the champion again."


def _rounded(value, digits: int = 4):
    return round(value, digits) if isinstance(value, float) else value
