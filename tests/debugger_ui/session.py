"""One run of a served Streamlit app over its websocket, with the Host header a browser would
send for a given name: what a DNS-rebinding page gets, without a browser's timing."""

from __future__ import annotations

import socket
import time


def page_text(port: int, query: str = "", *, host: str = "127.0.0.1", timeout: float = 60) -> str:
    """The text the app at ``127.0.0.1:port`` sends for one run of ``?query``, asked as
    ``host`` (the Host and Origin headers name it; the TCP connection goes to loopback)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    back = BackMsg()
    back.rerun_script.query_string = query
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    chunks: list[str] = []
    deadline = time.monotonic() + timeout
    with connect(
        f"ws://{host}:{port}/_stcore/stream",
        sock=sock,
        origin=f"http://{host}:{port}",
        subprotocols=["streamlit"],
        open_timeout=timeout,
    ) as ws:
        ws.send(back.SerializeToString())
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no script_finished from port {port} within {timeout:.0f}s")
            msg = ForwardMsg()
            msg.ParseFromString(ws.recv(timeout=remaining))
            if msg.WhichOneof("type") == "script_finished":
                return "\n".join(chunks)
            if msg.WhichOneof("type") == "delta":
                chunks.append(str(msg.delta))
