"""Judging on the Search page: a 0-3 grade for each result, saved to the workspace's judgment
store as it is picked (``brainrank ui --writable`` only; read-only shows the grades in the
results table and one line on how to grade).

Each result's four grades are one radio group, so Tab moves from result to result and the
arrow keys pick a grade. A pick is one transaction in ``WORKSPACE/judgments.sqlite`` (who
"ui"); the query joins the chosen set with its first grade, and the next ``brainrank train``
without ``--qrels`` learns from it. Callbacks only queue a grade (they run before the script,
where an error cannot be shown); the script writes it through ``Context.save_grade``, which
refuses in a read-only debugger whatever a browser sends.
"""

from __future__ import annotations

import re
import sqlite3

import streamlit as st

from brainrank.debugger_ui import state
from brainrank.debugger_ui.judgments import GRADES, TOP
from brainrank.debugger_ui.loaders import ALL_SETS, Context
from brainrank.debugger_ui.views.common import title_of
from brainrank.index.errors import BrainrankError, InputError
from brainrank.ranker.feedback.judgments import DEFAULT_SET, check_set_name

NEW_SET = "new set…"
UNJUDGED = "unjudged"
SCALE = "0 not relevant · 1 partly · 2 relevant · 3 highly relevant"
READ_ONLY_HINT = (
    "Grading is off in a read-only debugger: restart it with `brainrank ui --writable` to "
    "grade these results here."
)
_PENDING = "grading_pending"  # [(set, query, doc id, grade)] queued by the radio callbacks
_TARGET = "w_grade_target"
_NEW_NAME = "w_grade_new"
_SOURCE_SEEN = "grading_source_seen"
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def grade_key(doc_id: str) -> str:
    """The widget key of one result's grades (also its ``st-key-`` CSS class)."""
    return f"w_gr_{doc_id}"


def apply_pending(ctx: Context) -> None:
    """Write the grades picked since the last run; call before the page reads judgments."""
    pending = st.session_state.pop(_PENDING, [])
    if not pending:
        return
    shown = ctx.judgment_source  # before the write: a first grade creates the store
    saved_to = None
    for set_name, query, doc_id, grade in pending:
        try:
            ctx.save_grade(set_name, query, doc_id, grade)
        except (BrainrankError, sqlite3.Error, OSError) as exc:
            st.error(f"Grade {grade} of {doc_id} was not saved: {exc}")
        else:
            saved_to = set_name
    if saved_to is None:
        return
    st.session_state[_TARGET] = saved_to  # a set just created is picked from now on
    if shown not in (saved_to, ALL_SETS):
        # Show the set the grades went to, so the results table and sidebar include them.
        st.session_state[_SOURCE_SEEN] = saved_to
        state.navigate(jset=saved_to)


def render(ctx: Context, query: str, result, hits) -> None:
    """The grade controls of the results shown (or the read-only hint)."""
    if not ctx.writable:
        st.caption(READ_ONLY_HINT)
        return
    st.markdown("**Judge these results**")
    target = _target(ctx)
    if target is None:
        return
    qid, grades = ctx.set_grades(target, query)
    where = (
        f"query {qid} of set {target}, {len(grades)} graded"
        if qid
        else f"not in set {target} yet: its first grade adds it"
    )
    st.caption(
        f"{_escape(query)}: {where}. {SCALE}. Tab to a result, arrow keys pick its grade; "
        "each pick is saved at once."
    )
    for h in hits:
        key = grade_key(h.doc_id)
        st.session_state[key] = grades.get(h.doc_id)  # the store's grade, after any write
        row = st.columns([1, 8, 4, 2], vertical_alignment="center")
        row[0].markdown(f"**#{h.rank}**")
        row[1].markdown(f"`{h.doc_id}` {_escape(title_of(result, h.doc_id))}")
        row[2].radio(
            f"Grade of {h.doc_id}",
            GRADES,
            key=key,
            horizontal=True,
            label_visibility="collapsed",
            on_change=_queue,
            args=(key, target, query, h.doc_id),
        )
        if h.rank <= TOP and h.doc_id not in grades:
            row[3].badge(UNJUDGED, color="orange")


def _target(ctx: Context) -> str | None:
    """The set grades go to: picked from the store's sets, or a new one named here."""
    sets = ctx.judgment_sets
    source = ctx.judgment_source
    options = [*sets, NEW_SET]
    if source in sets:
        default = source
    else:
        default = DEFAULT_SET if DEFAULT_SET in sets else (sets[0] if sets else NEW_SET)
    if st.session_state.get(_TARGET) not in options or st.session_state.get(_SOURCE_SEEN) != source:
        st.session_state[_TARGET] = default  # follow the judgments the sidebar shows
    st.session_state[_SOURCE_SEEN] = source
    cols = st.columns([2, 2, 3])
    picked = cols[0].selectbox("Grade into judgment set", options, key=_TARGET)
    if picked != NEW_SET:
        return picked
    if _NEW_NAME not in st.session_state:
        st.session_state[_NEW_NAME] = "" if DEFAULT_SET in sets else DEFAULT_SET
    name = cols[1].text_input("New set name", key=_NEW_NAME).strip()
    try:
        return check_set_name(name)
    except InputError as exc:
        cols[2].caption(str(exc) if name else "Name the new set to grade into it.")
        return None


def _queue(key: str, set_name: str, query: str, doc_id: str) -> None:
    grade = st.session_state.get(key)
    if grade is not None:
        st.session_state.setdefault(_PENDING, []).append((set_name, query, doc_id, int(grade)))


def _escape(text: str) -> str:
    """``text`` shown literally in Markdown (a title with ``*`` or ``[`` stays a title)."""
    return _MARKDOWN.sub(r"\\\1", text)
