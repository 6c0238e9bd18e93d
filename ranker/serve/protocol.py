"""uvicorn's HTTP protocol with TCP_NODELAY on every connection.

With ``--workers`` above 1, uvicorn binds the listening socket itself as
``socket.socket(family)``, whose ``proto`` is 0, and asyncio only sets TCP_NODELAY on accepted
connections whose listening socket says ``IPPROTO_TCP``. Without it, Nagle's algorithm holds
the body of a response until the client acknowledges its headers, and the client delays that
acknowledgement by up to 40 ms: every request took 40 ms longer with two workers than with one
(``bench/bench_serve.py``). Setting the option per connection fixes it whatever the socket.
"""

from __future__ import annotations

import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's default HTTP protocol, with TCP_NODELAY set when a connection opens."""

    def connection_made(self, transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # not a TCP socket after all: nothing to fix
                pass
        super().connection_made(transport)
