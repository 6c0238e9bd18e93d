"""Who may use the debugger, and for what: the Host header check and the read-only default.

The debugger has no login. Two defences keep a browser that should not reach it out:

* **Host header.** A web page on another site can rebind its own DNS name to 127.0.0.1 and
  then talk to a debugger on loopback as if it were its own origin (DNS rebinding); the Host
  header of such a request still names the other site. Only the bound address, the loopback
  names when bound to loopback or to every interface, and names given with ``--allow-host``
  are served (bound to every interface, any IP literal too: rebinding needs a DNS name).
* **Read-only by default.** Promote, roll back, the query log, grades and comparison
  snapshots are written only when the server was started with ``brainrank ui --writable``;
  the functions that write refuse otherwise, whatever a client sends.

Standard library only, so the checks are tested without Streamlit.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from brainrank.index.errors import BrainrankError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ALL_INTERFACES = frozenset({"", "0.0.0.0", "::"})
READ_ONLY = (
    "This debugger is read-only: promoting, rolling back, logging searches, grading results "
    "and saving snapshots are off. Restart it with `brainrank ui --writable` to allow them."
)


class ReadOnlyError(BrainrankError):
    """A write was asked of a debugger started without ``--writable``."""


def require_writable(writable: bool, action: str) -> None:
    """Raise ``ReadOnlyError`` naming ``action`` unless the server was started writable."""
    if not writable:
        raise ReadOnlyError(
            f"cannot {action}: the debugger is read-only; restart it with "
            "`brainrank ui --writable` to allow it"
        )


def host_name(header: str) -> str:
    """The host part of a Host header (``[::1]:8501`` -> ``::1``), lower case, no final dot."""
    value = header.strip().lower()
    if value.startswith("["):  # an IPv6 literal, with or without a port
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP literal."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def allowed_hosts(bound: str | None, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names a request may name: the bound address, loopback names, ``extra``.

    The loopback names count when the server is bound to loopback or to every interface
    (``bound`` unset, ``0.0.0.0`` or ``::``), since only then do they reach it.
    """
    address = host_name(bound or "")
    names = {host_name(h) for h in extra if h.strip()}
    if address in ALL_INTERFACES or is_loopback(address):
        names |= LOOPBACK_NAMES
    if address not in ALL_INTERFACES:
        names.add(address)
    return frozenset(names)


def host_refusal(headers: dict[str, str], bound: str | None, extra: Iterable[str] = ()) -> str:
    """Why a request with these headers is refused; ``""`` when it may be served.

    No headers at all means no HTTP request (Streamlit's ``AppTest`` runs the script in
    process); a browser always sends Host, so a request without one is refused.
    """
    if not headers:
        return ""
    header = next((v for k, v in headers.items() if k.lower() == "host"), None)
    if header is None:
        return "the request has no Host header, which every browser sends"
    host = host_name(header)
    allowed = allowed_hosts(bound, extra)
    if host in allowed or (is_loopback(host) and "127.0.0.1" in allowed):
        return ""
    if host_name(bound or "") in ALL_INTERFACES and _is_ip(host):
        return ""
    return (
        f"the request names host {host!r}, but this debugger answers only as "
        f"{', '.join(sorted(allowed))}. A web page that points its own name at this machine "
        "(DNS rebinding) looks like this. To reach the debugger under that name, restart it "
        f"with `brainrank ui --allow-host {host}`"
    )
