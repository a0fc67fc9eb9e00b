"""The HTTP/1.1 protocol ``fathom serve`` runs: uvicorn's httptools protocol with bounded request heads.

uvicorn's httptools protocol buffers a request's header block without limit (llhttp collects a header value
until its line ends), so one client sending a 64 MB header - before authentication, which needs the headers -
held the event loop for seconds and every other request with it. This subclass counts the bytes of each
request head *before* the parser sees them and refuses, with ``431 Request Header Fields Too Large`` and a
closed connection:

* a head (request line + headers) over ``service.max_header_bytes`` (32 KiB by default),
* more than ``service.max_headers`` header fields (100),

and closes a connection whose head is not complete ``service.header_timeout_s`` (10 s) after its first byte
(or after the connection opened): a client trickling a header a byte at a time cannot hold a connection
forever. Idle keep-alive connections are closed by uvicorn's ``timeout_keep_alive`` as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fathom.service.core.config import ServiceSettings

_END_OF_HEAD = b"\r\n\r\n"
LINGER_S = 1.0        # after a refusal, unread input is discarded this long before the socket closes


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with limits on the request head (see the module docstring)."""

    max_header_bytes = 32 * 1024
    max_headers = 100
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._start_head()

    def _start_head(self) -> None:
        """A new request head begins (connection open, or the previous response done)."""
        self._reading_head = True
        self._head_bytes = 0
        self._head_fields = 0
        self._tail = b""
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return                    # a pipelined request is being answered: its head was read already
        if self._reading_head and self._head_bytes and not self.transport.is_closing():
            self._refuse(408, b"Request Timeout", "the request head did not arrive in time")
        elif self._reading_head and not self.transport.is_closing():
            self.transport.close()    # opened and never sent a byte (or went quiet between requests)

    def _refuse(self, status: int, reason: bytes, message: str) -> None:
        """Answer, stop parsing, and close after a short linger.

        Closing at once with the client's bytes still unread makes the kernel
        reset the connection, and a reset can destroy the answer before the
        client reads it; so the answer is followed by a FIN, whatever still
        arrives is discarded unparsed, and the socket closes ``LINGER_S`` later.
        """
        self._refused = True
        self._cancel_head_timer()
        body = message.encode("ascii")
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, reason, len(body), body))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._reading_head:
            seen = self._tail + data
            end = seen.find(_END_OF_HEAD)
            head = self._head_bytes + (len(data) if end < 0 else end + len(_END_OF_HEAD) - len(self._tail))
            if head > self.max_header_bytes:
                self._refuse(431, b"Request Header Fields Too Large",
                             f"the request head is over {self.max_header_bytes} bytes")
                return
            self._head_bytes = head
            self._tail = seen[-3:]
        super().data_received(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._head_fields += 1
        if self._head_fields > self.max_headers:
            self._refuse(431, b"Request Header Fields Too Large", f"more than {self.max_headers} header fields")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._reading_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


def http_protocol(service: ServiceSettings) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=``, with this deployment's limits."""
    return type("FathomHttpProtocol", (BoundedHttpToolsProtocol,), {
        "max_header_bytes": service.max_header_bytes, "max_headers": service.max_headers,
        "header_timeout_s": service.header_timeout_s})


def uvicorn_options(service: ServiceSettings) -> dict[str, Any]:
    """Everything ``fathom serve`` passes to uvicorn besides the app, host and port."""
    return {"http": http_protocol(service), "timeout_keep_alive": service.keep_alive_timeout_s,
            "limit_concurrency": service.limit_concurrency}
