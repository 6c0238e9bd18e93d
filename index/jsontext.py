"""Untrusted text and JSON from files and arguments: every failure as a ``ValueError``.

``json.loads`` raises ``RecursionError`` for deeply nested input and a bare ``ValueError`` (not
``JSONDecodeError``) for an integer past Python's digit limit, and it accepts lone surrogates
(``"\\ud800"``), which no UTF-8 file, SQLite column or terminal can hold. Readers call these
helpers and turn the ``ValueError`` into a message naming the file and line. Standard library
only.
"""

from __future__ import annotations

import json
from typing import Any


def loads(text: str) -> Any:
    """``json.loads`` of one record; a ``ValueError`` (never another type) says what is wrong.

    The message is the problem alone ("Expecting value at column 1", "nested too deeply"); the
    caller names the file, the line and the format.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{err.msg} at column {err.colno}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as err:  # e.g. "Exceeds the limit (4300 digits) for integer string ..."
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(first[:200]) from None


def check_text(value: str, name: str) -> str:
    """``value`` when it is valid Unicode; a lone surrogate raises ``ValueError`` naming ``name``.

    Lone surrogates come from JSON escapes (``"\\udc80"``) and from command-line arguments or
    file names that are not valid UTF-8 (Python decodes those bytes as surrogates).
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(value[err.start])
        raise ValueError(
            f"{name} is not valid Unicode (lone surrogate \\u{code:04x} at character "
            f"{err.start + 1}); expected UTF-8 text"
        ) from None
    return value


def is_valid_text(value: str) -> bool:
    """True when ``value`` holds no lone surrogate (so UTF-8, SQLite and terminals take it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
