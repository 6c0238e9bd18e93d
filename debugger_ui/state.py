"""The view lives in the URL: ``?page=why-not&q=refund+policy&mode=learned&doc=d017``
(filters: ``&where=price+<+50``, one condition per line).

One dict in ``st.session_state`` holds the view, read from the URL once per browser session and
written back after every run, so any link reopens the same page, query, ranking and document.
Widgets are bound to it under their own keys ("w_" + name): Streamlit forgets the state of a
widget that a run does not draw, and the view must outlive page switches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

PAGES = {
    "search": "Search & explain",
    "why-not": "Why not this document",
    "compare": "Compare",
    "models": "Models",
    "health": "Health",
}
# Order of the parameters in the URL.
URL_KEYS = (
    "page",
    "q",
    "where",
    "mode",
    "model",
    "doc",
    "k",
    "rank",
    "a",
    "b",
    "set",
    "snap",
    "jset",
    "window",
    "feature",
)
_VIEW = "view"
_RESET = "_reset_widgets"


def view() -> dict[str, str]:
    """The current view; the first call of a session reads it from the URL."""
    if _VIEW not in st.session_state:
        params = st.query_params
        st.session_state[_VIEW] = {k: params[k] for k in URL_KEYS if params.get(k)}
    for key in st.session_state.pop(_RESET, ()):
        # Dropped before any widget is drawn, so bound widgets restart from the view.
        for widget in [k for k in st.session_state if str(k).startswith(f"w_{key}")]:
            del st.session_state[widget]
    return st.session_state[_VIEW]


def get(key: str, default: str = "") -> str:
    return view().get(key, default)


def put(key: str, value) -> None:
    v = view()
    if value is None or value == "":
        v.pop(key, None)
    else:
        v[key] = str(value)


def publish() -> None:
    """Write the view to the URL (ordered, empty values left out)."""
    v = view()
    st.query_params.from_dict({k: v[k] for k in URL_KEYS if v.get(k)})


def navigate(**changes) -> None:
    """Change the view from code (e.g. "open this query") and rerun with widgets reset."""
    for key, value in changes.items():
        put(key, value)
    st.session_state[_RESET] = list(changes)
    st.rerun()


def text(
    key: str, label: str, *, widget: str = "", where=st, multiline: bool = False, **kwargs
) -> str:
    """A text input (a text area when ``multiline``) bound to view[key]."""
    wkey = f"w_{key}{widget}"
    if wkey not in st.session_state:
        st.session_state[wkey] = get(key)
    draw = where.text_area if multiline else where.text_input
    value = draw(label, key=wkey, **kwargs).strip()
    put(key, value)
    return value


def choice(
    key: str,
    label: str,
    options: Sequence[str],
    default: str,
    *,
    widget: str = "",
    format_func: Callable[[str], str] = str,
    where=st,
    radio: bool = False,
    **kwargs,
) -> str:
    """A selectbox (or radio) bound to view[key]; a value from the URL not offered falls back,
    and the page says so once (a link to a model since deleted must not pass for it)."""
    wkey = f"w_{key}{widget}"
    options = list(options)
    from_link = wkey not in st.session_state
    wanted = st.session_state.get(wkey, get(key, default))
    if wanted not in options:
        fallback = default if default in options else options[0]
        if from_link and wanted not in ("", default):
            where.warning(
                f"{label}: `{wanted}` from the link is not among the choices here; showing "
                f"{format_func(fallback)} instead"
            )
        wanted = fallback
    st.session_state[wkey] = wanted
    draw = where.radio if radio else where.selectbox
    value = draw(label, options, key=wkey, format_func=format_func, **kwargs)
    put(key, value)
    return value


def number(key: str, label: str, default: int, lo: int, hi: int, *, widget: str = "") -> int:
    """An integer input bound to view[key], clamped to [lo, hi]."""
    wkey = f"w_{key}{widget}"
    hi = max(hi, lo)
    if wkey not in st.session_state:
        try:
            st.session_state[wkey] = int(get(key, str(default)))
        except ValueError:
            st.session_state[wkey] = default
    st.session_state[wkey] = min(max(int(st.session_state[wkey]), lo), hi)
    value = int(st.number_input(label, min_value=lo, max_value=hi, step=1, key=wkey))
    put(key, value)
    return value
