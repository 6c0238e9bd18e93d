"""How the CLI fails: one line and an exit code, never a traceback; JSON with ``--json``.

Every command runs through ``guarded``. A ``BrainrankError`` or an operating-system error (a
path that is a folder, a full disk) exits 1, a usage error 2, as Click would. Given ``--json``,
the failure is one line ``{"error": "<message>", "exit_code": N}`` on stdout, so a script
reading stdout always gets JSON; without it the message goes to stderr.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable, Sequence

from rich.markup import escape
from typer import Abort
from typer._click.exceptions import ClickException  # Typer vendors Click; its errors are these

from brainrank.index.errors import BrainrankError
from brainrank.index.jsontext import is_valid_text
from brainrank.ranker.cli.console import err

EXIT_BAD_INPUT = 1
EXIT_USAGE = 2


def guarded(run: Callable[[], int | None], args: Sequence[str]) -> int:
    """Run ``run`` (Click in non-standalone mode) and turn any failure into its exit code."""
    as_json = "--json" in args
    try:
        _check_arguments(args)
        code = run()
    except ClickException as exc:
        if not as_json:
            _show_usage_error(exc)
            return exc.exit_code
        return _fail(exc.format_message(), exc.exit_code, as_json)
    except Abort:
        return _fail("aborted", EXIT_BAD_INPUT, as_json)
    except BrainrankError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT, as_json)
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # the reader went away (`| head`): nothing to tell it
            return EXIT_BAD_INPUT
        return _fail(os_message(exc), EXIT_BAD_INPUT, as_json)
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def os_message(exc: OSError) -> str:
    """``[Errno 21] Is a directory: 'x'`` as people read it: ``x: is a directory``."""
    what = (exc.strerror or str(exc) or type(exc).__name__).lower()
    return f"{exc.filename}: {what}" if exc.filename is not None else what


def _check_arguments(args: Sequence[str]) -> None:
    for position, arg in enumerate(args, start=1):
        if "\0" in arg:  # no shell passes one; a path or query holding one cannot be used
            raise BrainrankError(f"argument {position} contains a NUL character")
        if not is_valid_text(arg):
            try:  # the bytes the shell passed, as Python decoded them (surrogateescape)
                shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:  # a surrogate no byte decodes to (only from Python)
                shown = _printable(arg)
            raise BrainrankError(
                f"argument {position} ({shown[:80]}) is not valid UTF-8; brainrank takes UTF-8 "
                "text and paths"
            )


def _fail(message: str, code: int, as_json: bool) -> int:
    message = _printable(message)
    if as_json:
        print(json.dumps({"error": message, "exit_code": code}), flush=True)
    else:
        err.print(f"[red]error:[/] {escape(message)}", highlight=False)
    return code


def _printable(message: str) -> str:
    """The message with any lone surrogate (from a non-UTF-8 path) written as an escape."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def _show_usage_error(exc: ClickException) -> None:
    """Click's usage error as Typer shows it (a rich panel) when rich is on."""
    from typer import core, rich_utils

    if core.HAS_RICH:
        rich_utils.rich_format_error(exc)
    else:
        exc.show()
