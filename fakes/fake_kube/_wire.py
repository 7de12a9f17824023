"""HTTP/1.1 for the fake API server: a lean uvicorn protocol in place of uvicorn's h11 one.

uvicorn's h11 protocol runs every request and every chunk of a watch stream through h11's state
machine and header validation — in the benchmarks more CPU than the API server's own work. This
protocol frames the same requests and answers (request line, headers, ``Content-Length`` or chunked
bodies; answers with ``Content-Length`` or chunked; keep-alive and its timeout; ``Connection:
close``; ``Expect: 100-continue``; back-pressure) and gives the ASGI application the same scope,
``receive`` (a disconnect once the client is gone or the answer is complete) and ``send`` as
uvicorn's h11 protocol does, with its error handling: an exception before the answer started is a
500, after it the connection is closed. It is given to uvicorn as ``http=`` (uvicorn instantiates
it per connection) and serves only what the fake needs: no upgrades, no pipelining ahead of an
answer (a next request waits in the buffer until the answer is complete, as with h11).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from uvicorn.server import ServerState

MAX_HEAD_BYTES = 16 * 1024
"""h11's ``max_incomplete_event_size`` (uvicorn's default): a longer request head is refused."""
_CLOSE = (b"connection", b"close")


class BadRequest(Exception):
    """A request that cannot be parsed: answered with 400 and the connection closed."""


class LeanHttpProtocol(asyncio.Protocol):
    """One client connection (uvicorn calls ``LeanHttpProtocol(config, server_state, app_state)``)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.server_state = server_state
        self.app_state = app_state
        self.keep_alive_s = config.timeout_keep_alive
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.buffer = bytearray()
        self.cycle: Cycle | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.idle_since: float | None = None
        """Loop time of the last answer if nothing came since (the keep-alive timeout runs from it)."""
        self.writable = asyncio.Event()
        self.writable.set()

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.server_state.connections.add(self)  # type: ignore[arg-type]
        self.transport = transport
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
        if cycle is not None:
            cycle.message_event.set()
        self.writable.set()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.idle_since = None
        self.buffer += data
        try:
            self._advance()
        except BadRequest as exc:
            self._refuse(str(exc))

    # --- requests ------------------------------------------------------------------------------

    def _advance(self) -> None:
        """Feed the current request's body, or start the next request once the last one is done."""
        cycle = self.cycle
        if cycle is not None:
            if not cycle.body_complete:
                cycle.take_body(self.buffer)
            if not cycle.response_complete or not cycle.body_complete:
                return
            self.cycle = None
        if self.transport.is_closing():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise BadRequest("Invalid HTTP request received.")
            return
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        self._start(head)

    def _start(self, head: bytes) -> None:
        if len(head) > MAX_HEAD_BYTES:
            raise BadRequest("Invalid HTTP request received.")
        self.idle_since = None
        request_line, *lines = head.split(b"\r\n")
        parts = request_line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise BadRequest("Invalid HTTP request received.")
        method, target, version = parts
        headers = []
        for line in lines:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise BadRequest("Invalid HTTP request received.")
            headers.append((name.lower(), value.strip(b" \t")))
        raw_path, _, query = target.partition(b"?")
        scope = {
            "type": "http",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.3"},
            "http_version": version[5:].decode("ascii"),
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method.decode("ascii"),
            "root_path": self.config.root_path,
            "path": self.config.root_path + unquote(raw_path.decode("ascii")),
            "raw_path": self.config.root_path.encode("ascii") + raw_path,
            "query_string": query,
            "headers": headers,
            "state": self.app_state.copy(),
        }
        self.cycle = cycle = Cycle(self, scope)
        cycle.take_body(self.buffer)
        task = self.loop.create_task(cycle.run_asgi(self.app))
        task.add_done_callback(self.server_state.tasks.discard)
        self.server_state.tasks.add(task)

    def _refuse(self, message: str) -> None:
        """h11's answer to a request it cannot parse (uvicorn ``send_400_response``)."""
        self.logger.warning(message)
        body = message.encode("ascii")
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\n"
            + b"".join(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers)
            + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        self.transport.close()

    # --- between requests ----------------------------------------------------------------------

    def response_complete(self, cycle: Cycle) -> None:
        self.server_state.total_requests += 1
        if not cycle.keep_alive:
            self.transport.close()
            return
        if self.transport.is_closing():
            return
        self.idle_since = self.loop.time()
        if self.idle_timer is None:  # one timer per keep-alive period, not one per answer
            self.idle_timer = self.loop.call_later(self.keep_alive_s, self._idle_timeout)
        if cycle.body_complete:
            try:
                self._advance()
            except BadRequest as exc:
                self._refuse(str(exc))

    def _idle_timeout(self) -> None:
        """Close the connection once it has been idle for ``timeout_keep_alive`` after an answer
        (uvicorn's timer, started at each answer and stopped by any data received)."""
        self.idle_timer = None
        if self.idle_since is None or self.transport.is_closing():
            return  # busy: the next answer starts the timer again
        remaining_s = self.idle_since + self.keep_alive_s - self.loop.time()
        if remaining_s > 0:
            self.idle_timer = self.loop.call_later(remaining_s, self._idle_timeout)
        else:
            self.transport.close()

    def shutdown(self) -> None:
        """The server stops: close an idle connection now, a busy one after its answer."""
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
        else:
            self.cycle.keep_alive = False


class Cycle:
    """One request and its answer; ``receive`` and ``send`` as uvicorn's h11 protocol has them."""

    def __init__(self, connection: LeanHttpProtocol, scope: dict[str, Any]) -> None:
        self.connection = connection
        self.transport = connection.transport
        self.scope = scope
        self.message_event = asyncio.Event()
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.chunked_response = False
        headers = dict(scope["headers"])
        connection_tokens = {t.strip().lower() for t in headers.get(b"connection", b"").split(b",")}
        self.keep_alive = scope["http_version"] != "1.0" and b"close" not in connection_tokens  # as h11
        self.asks_close = _CLOSE in scope["headers"]
        self.waiting_for_continue = headers.get(b"expect", b"").lower() == b"100-continue"
        self.body = bytearray()
        self.chunked_request = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        length = headers.get(b"content-length")
        if length is not None and not length.strip().isdigit():
            raise BadRequest("Invalid HTTP request received.")
        self.remaining = 0 if self.chunked_request else int(length or 0)
        self.body_complete = not self.chunked_request and self.remaining == 0
        if self.body_complete:
            self.message_event.set()
        self.pending_head = b""
        """The answer's head, written with its first body bytes (one segment instead of two) or at
        the end of this turn of the loop, whichever is first."""

    # --- the request body ----------------------------------------------------------------------

    def take_body(self, buffer: bytearray) -> None:
        """Move this request's body bytes out of the connection's buffer."""
        if self.body_complete:
            return
        if self.chunked_request:
            self._take_chunks(buffer)
        else:
            taken = buffer[: self.remaining]
            del buffer[: self.remaining]
            self.body += taken
            self.remaining -= len(taken)
            self.body_complete = self.remaining == 0
        if self.body_complete:
            self.message_event.set()

    def _take_chunks(self, buffer: bytearray) -> None:
        while True:
            if self.remaining:  # inside a chunk: its data, then its CRLF
                if len(buffer) < self.remaining + 2:
                    return
                self.body += buffer[: self.remaining]
                del buffer[: self.remaining + 2]
                self.remaining = 0
            end = buffer.find(b"\r\n")
            if end < 0:
                return
            size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest("Invalid HTTP request received.") from None
            if size == 0:  # the last chunk, then trailers up to an empty line
                trailer_end = buffer.find(b"\r\n\r\n", end)
                if trailer_end < 0 and buffer[end : end + 4] != b"\r\n\r\n":
                    return
                del buffer[: (trailer_end if trailer_end >= 0 else end) + 4]
                self.body_complete = True
                return
            del buffer[: end + 2]
            self.remaining = size

    # --- ASGI ----------------------------------------------------------------------------------

    async def run_asgi(self, app: Any) -> None:
        logger = self.connection.logger
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self._send_500()
            else:
                self.flush()
                self.transport.close()
        else:
            if result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                logger.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.response_complete and not self.disconnected:
                logger.error("ASGI callable returned without completing response.")
                self.flush()
                self.transport.close()

    async def _send_500(self) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), _CLOSE]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error", "more_body": False})

    async def receive(self) -> dict[str, Any]:
        if self.waiting_for_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_continue = False
        if not self.disconnected and not self.response_complete:
            await self.message_event.wait()
            self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body, self.body = bytes(self.body), bytearray()
        return {"type": "http.request", "body": body, "more_body": not self.body_complete}

    async def send(self, message: Any) -> None:
        if not self.connection.writable.is_set() and not self.disconnected:
            await self.connection.writable.wait()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message['type']}'.")
            self.response_started = True
            self.waiting_for_continue = False
            self.pending_head = self._head(message["status"], list(message.get("headers", [])))
            self.connection.loop.call_soon(self.flush)
        elif not self.response_complete:
            if message["type"] != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message['type']}'.")
            self._write_body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message['type']}' sent, after response already completed.")

    def flush(self) -> None:
        head, self.pending_head = self.pending_head, b""
        if head and not self.transport.is_closing():
            self.transport.write(head)

    def _head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        if self.asks_close and _CLOSE not in headers:
            headers.append(_CLOSE)
        names = {name.lower() for name, _ in headers}
        if b"connection" in names and any(
            name.lower() == b"connection" and b"close" in value.lower() for name, value in headers
        ):
            self.keep_alive = False
        bodiless = self.scope["method"] == "HEAD" or status in (204, 304) or status < 200
        if not bodiless and b"content-length" not in names and b"transfer-encoding" not in names:
            if self.scope["http_version"] == "1.0":
                self.keep_alive = False  # the end of the body is the end of the connection
            else:
                self.chunked_response = True
                headers.append((b"transfer-encoding", b"chunked"))
        if not self.keep_alive and b"connection" not in names and self.scope["http_version"] != "1.0":
            headers.append(_CLOSE)
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, STATUS_PHRASES[status])]
        for name, value in [*self.connection.server_state.default_headers, *headers]:
            lines.append(name + b": " + value + b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def _write_body(self, body: bytes, more_body: bool) -> None:
        if self.scope["method"] == "HEAD":
            body = b""
        head, self.pending_head = self.pending_head, b""
        if self.chunked_response:
            framed = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            data = head + (framed if more_body else framed + b"0\r\n\r\n")
        else:
            data = head + body
        if data:
            self.transport.write(data)
        if not more_body:
            self.response_complete = True
            self.message_event.set()
            self.connection.response_complete(self)
