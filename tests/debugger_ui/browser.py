"""Headless Chromium against a running debugger: page DOMs and screenshots.

Also regenerates the README screenshots from a debugger already serving on PORT::

    python -m tests.debugger_ui.browser --port 8501 --out docs/screenshots [PAGE ...]
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The flags the issue asks for; --virtual-time-budget lets the page's scripts run before the
# shot, but it cannot wait for the server, hence wait_for_text().
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
    "--run-all-compositor-stages-before-draw",
)


def chromium() -> str | None:
    """The Chromium executable (Debian package ``chromium``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (Linux ``/proc/net``)."""
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, _, state = line.split()[1:4]
            address, hexport = local.split(":")
            if state != "0A" or int(hexport, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # Each 32-bit word is in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(raw)))
    return found


def wait_http(url: str, timeout: float) -> None:
    """Wait until ``url`` answers 200 (the server is up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")
        time.sleep(0.5)


def capture(
    url: str,
    png: Path | None = None,
    *,
    window: tuple[int, int] = (1280, 1000),
    budget_ms: int = 20000,
    timeout: float = 120,
) -> str:
    """Load ``url`` once in a fresh profile; return its DOM and optionally screenshot it."""
    with _profile() as profile:
        cmd = [
            chromium() or "chromium",
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
        ]
        if png is not None:
            cmd.append(f"--screenshot={png}")
        proc = subprocess.Popen(
            [*cmd, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            return proc.communicate(timeout=timeout)[0]
        finally:
            _stop(proc)


@contextmanager
def _profile() -> Iterator[str]:
    """A fresh Chromium profile folder, removed afterwards."""
    # Chromium's helper processes may still touch the profile while it is removed: what they
    # leave behind is only a stray temporary folder, never a failed test.
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        yield profile


def _stop(proc: subprocess.Popen) -> None:
    """End a Chromium started in its own session, with every helper process it spawned.

    Terminating the browser process alone leaves its renderer, GPU and crash-handler children
    running for a moment, still writing into the profile folder.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # the whole group is gone
            break
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.2)  # helpers exit after the browser; the SIGKILL round catches stragglers
    proc.wait()


class Page:
    """One headless Chromium tab driven over the DevTools protocol: run JavaScript in the page,
    click, press keys. (``--dump-dom`` only reads a page; grading needs a user's hands.)"""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self._ws = connect(ws_url, max_size=None, open_timeout=30)
        self._id = 0

    def call(self, method: str, timeout: float = 30, **params) -> dict:
        """Send one DevTools command and return its result (events in between are skipped)."""
        import json

        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self._ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if reply.get("id") != self._id:
                continue
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply["result"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 60, what: str = ""):
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        probe = f"(() => {{ const v = ({expression}); return v instanceof Node ? true : v; }})()"
        while True:
            value = self.evaluate(probe)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never showed {what or expression} within {timeout:.0f}s")
            time.sleep(0.25)

    def idle(self, timeout: float = 60) -> None:
        """Wait until Streamlit has finished running the script (no "Running..." widget)."""
        time.sleep(0.3)  # a rerun starts a moment after the click that asked for it
        self.wait_for(
            "!document.querySelector('[data-testid=\"stStatusWidget\"]')",
            timeout=timeout,
            what="the end of the script run",
        )

    def press(self, key: str, code: str | None = None, key_code: int = 0) -> None:
        """One key press (down and up) on the focused element, as a keyboard sends it."""
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key=key,
                code=code or key,
                windowsVirtualKeyCode=key_code,
            )

    def dom(self) -> str:
        """The page's DOM as HTML, as ``--dump-dom`` prints it."""
        return self.evaluate("document.documentElement.outerHTML")

    def screenshot(self, png: Path, timeout: float = 30) -> None:
        """A PNG of the page's viewport."""
        shot = self.call("Page.captureScreenshot", timeout=timeout, format="png")
        png.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self._ws.close()


# DevTools key codes of the keys the tests press.
KEYS = {"Tab": 9, "ArrowRight": 39, "ArrowLeft": 37, "ArrowDown": 40, "ArrowUp": 38, " ": 32}


@contextmanager
def open_page(url: str, *, window: tuple[int, int] = (1280, 1600), timeout: float = 60):
    """A headless Chromium showing ``url``, driven as a ``Page`` until the block ends."""
    with _profile() as profile:
        proc = subprocess.Popen(
            [
                chromium() or "chromium",
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={window[0]},{window[1]}",
                "--remote-debugging-port=0",  # Chromium picks a port and writes it down
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        page = None
        try:
            port = _devtools_port(Path(profile), timeout)
            page = Page(_page_socket(port, timeout))
            page.call("Page.navigate", url=url)
            yield page
        finally:
            if page is not None:
                page.close()
            _stop(proc)


def _devtools_port(profile: Path, timeout: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(marker.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Chromium wrote no {marker.name} within {timeout:.0f}s"
                ) from None
            time.sleep(0.2)


def _page_socket(port: int, timeout: float) -> str:
    """The DevTools websocket of the browser's one tab."""
    import json

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                targets = json.loads(r.read())
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"Chromium's DevTools on port {port} showed no page")
        time.sleep(0.2)


def wait_for_text(
    url: str, text: str, png: Path | None = None, *, timeout: float = 120, **kwargs
) -> str:
    """Capture ``url`` until its DOM contains ``text`` (the server may still be computing)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            dom = capture(url, png, **kwargs)
        except subprocess.TimeoutExpired:  # a Chromium that hung under load: try again
            dom = ""
        if text in dom:
            return dom
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} never showed {text!r} within {timeout:.0f}s")
        time.sleep(3)  # each try costs a Chromium start; leave the CPU to the server


def ink(png: Path, left: int = 320) -> float:
    """Share of dark pixels right of the sidebar: about 0 for a blank page, not for text."""
    from PIL import Image

    with Image.open(png) as image:
        gray = image.convert("L")
        width, height = gray.size
        main = gray.crop((min(left, width - 1), 80, width, height))
        dark = sum(main.histogram()[:160])
        return dark / (main.size[0] * main.size[1])


PAGES = {
    # name: (URL query, text that shows the page is complete, window height)
    "search": ("?q=make+my+tv+sound+better&doc=d081", "Relevant documents missed", 3400),
    "why-not": ("?page=why-not&q=make+my+tv+sound+better&doc=d015&rank=10", "Holding it", 1500),
    "compare": (
        "?page=compare&q=make+my+tv+sound+better&a=hybrid&b=learned:v0001&set=1",
        "Open a query",
        1900,
    ),
    "models": ("?page=models&model=v0001", "Promote or roll back", 1100),
    "health": ("?page=health", "Retrain history", 2950),
}


def shoot_pages(base: str, out: Path, names: list[str] | None = None) -> list[Path]:
    """Screenshot every page, or the ``names`` given (README figures), from a debugger
    serving at ``base``."""
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    for name, (query, ready, height) in PAGES.items():
        if names and name not in names:
            continue
        png = out / f"{name}.png"
        wait_for_text(base + "/" + query, ready, window=(1280, height))  # warm
        wait_for_text(base + "/" + query, ready, png, window=(1280, height))
        shots.append(png)
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument(
        "pages", nargs="*", metavar="PAGE", help=f"{', '.join(PAGES)} (default: all)"
    )
    args = parser.parse_args()
    unknown = sorted(set(args.pages) - set(PAGES))
    if unknown:
        parser.error(f"unknown page(s) {', '.join(unknown)}; choose from {', '.join(PAGES)}")
    for png in shoot_pages(f"http://127.0.0.1:{args.port}", args.out, args.pages):
        print(png, png.stat().st_size // 1024, "KB")


if __name__ == "__main__":
    main()
