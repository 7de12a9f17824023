"""A lean HTTP/1.1 transport under :class:`httpx.AsyncClient`: asyncio streams and a small pool.

Why: httpx's own transport (httpcore on anyio) costs about 1 ms of CPU per request on loopback —
it checks every pooled connection twice per request (a ``select`` each, through anyio's attribute
lookups), enters cancel scopes and asks sniffio which event loop runs on every lock. jes sends
four control-plane requests per event (``.started``, two progress events, ``.finished``), so that
was the largest single cost of an event. This transport does the same work for about a fifth of
the CPU (``make bench``; bench/README.md). Everything above it stays httpx: the client, requests
and responses, auth flows, content decoding, the exception types callers handle.

What it does, as httpcore does it:

* HTTP/1.1 over TCP or TLS (``ssl_context``), one request at a time per connection; keep-alive
  with at most ``max_connections`` connections per process (waiting for one is the ``pool``
  timeout; waiters get one by the priority of their work, :class:`jes.util.gates.Urgency`, then in
  their order; with a :class:`~jes.util.gates.RoutineLimit`, routine requests wait there too while
  the server's answers show a queue building up); idle connections are dropped after
  ``keepalive_expiry_s``, and a pooled connection whose socket turned readable while idle (the
  server closed it, or sent garbage) is never reused.
* Request bodies are sent as httpx framed them (``Content-Length`` or chunked); response bodies
  are streamed (``Content-Length``, chunked, or until the server closes), never buffered here.
* Errors are httpx's: ``ConnectError``/``ConnectTimeout`` (nothing was sent), ``WriteError``/
  ``WriteTimeout``, ``ReadError``/``ReadTimeout``, ``RemoteProtocolError`` (the server closed
  without a complete answer, or answered something that is not HTTP/1.x), ``PoolTimeout``.
  A connection that saw any error, or whose response was not read to its end, is closed.

Not supported (jes does not use them with this transport): HTTP proxies (the client keeps httpx's
own transport when a proxy is configured), HTTP/2, ``Expect: 100-continue``, upgrades.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from jes.clients.httpwire import MAX_HEAD_BYTES, Framing, framing_of, read_head, reading, request_head, send_request
from jes.util import gates

#: Bytes per read of a response body.
CHUNK_BYTES = 64 * 1024
#: Below the 5 s keep-alive timeout of uvicorn, gunicorn and many proxies (nginx: 75 s).
DEFAULT_KEEPALIVE_EXPIRY_S = 4.0

Origin = tuple[str, str, int]


def tls_context(verify: bool | ssl.SSLContext) -> ssl.SSLContext:
    """The TLS context for httpx's ``verify`` value (False: no certificate check, as httpx does)."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    origin: Origin
    idle_since: float = field(default_factory=time.monotonic)
    routine: bool = False
    """Whether its request holds a routine place of the pool (:class:`~jes.util.gates.RoutineLimit`)."""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()

    def stale(self, now: float, expiry_s: float) -> bool:
        """Expired, closed by the peer, or readable while idle (EOF or unsolicited bytes)."""
        if now - self.idle_since > expiry_s or self.writer.is_closing() or self.reader.at_eof():
            return True
        if self.reader._buffer:  # type: ignore[attr-defined]  # bytes nobody asked for
            return True
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return True
        try:  # poll, not select: select refuses descriptors from 1024 on (jes may hold that many sockets)
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            readable = poller.poll(0)
        except (OSError, ValueError):
            return True
        return bool(readable)


@dataclass(frozen=True)
class Answer:
    """A whole response of :meth:`LeanTransport.exchange`."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (``name`` in lower case)."""
        return next((value for key, value in self.headers if key.lower() == name), None)


@dataclass(frozen=True)
class Opened:
    """An answer of :meth:`LeanTransport.open`: its head, and its body still to be read."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: httpx.AsyncByteStream


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    found = request.extensions.get("timeout") or {}
    return {k: found.get(k) for k in ("connect", "read", "write", "pool")}


class LeanTransport(httpx.AsyncBaseTransport):
    """See the module docstring. One instance per client; not shared between event loops."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 8,
        keepalive_expiry_s: float = DEFAULT_KEEPALIVE_EXPIRY_S,
        routine: gates.RoutineLimit | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        self.max_connections = max_connections
        self._slots = gates.PriorityGate(max_connections, routine)
        """Waiting for a connection: urgent work first (:class:`jes.util.gates.Urgency`); with a
        ``routine`` limit, routine requests only as many at once as the server answers unqueued
        (learnt from the time from sending to the answer's head)."""
        self._keepalive_expiry_s = keepalive_expiry_s
        self._idle: dict[Origin, list[_Connection]] = {}
        self._closed = False

    # -- pool ---------------------------------------------------------------------------------

    def _pooled(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.stale(now, self._keepalive_expiry_s):
                return connection
            connection.close()
        return None

    def _release(self, connection: _Connection) -> None:
        if self._closed:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.origin, []).append(connection)

    async def _connect(self, origin: Origin, timeout_s: float | None) -> _Connection:
        scheme, host, port = origin
        tls = self._tls() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout_s):
                # no happy_eyeballs_delay: on Python 3.11 asyncio's staggered connect leaks the losing
                # sockets when cancelled (tests saw "unclosed socket" and "fd is not registered")
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls is not None else None, limit=MAX_HEAD_BYTES
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(reader, writer, origin)

    def use_tls(self, context: ssl.SSLContext) -> None:
        """Connections from now on use ``context`` (renewed certificates); pooled ones are left."""
        self._ssl_context = context

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def aclose(self) -> None:
        """Close the idle connections and wait (briefly) until their sockets are closed: a loop that
        ends right after would leave them open (``ResourceWarning: unclosed transport``)."""
        self._closed = True
        idle = [connection for connections in self._idle.values() for connection in connections]
        self._idle.clear()
        for connection in idle:
            connection.close()
        if idle:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await asyncio.gather(*(c.writer.wait_closed() for c in idle), return_exceptions=True)

    # -- one request --------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url.scheme}://'.")
        port = url.port or (443 if url.scheme == "https" else 80)
        timeouts = _timeouts(request)
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        head = request_head(request.method.encode("ascii"), request.url.raw_path, request.headers.raw)
        connection, answer, keep_alive = await self._start(
            (url.scheme, url.host, port), timeouts, head, _request_body(request), chunked
        )
        keep_alive = keep_alive and not _says_close(request.headers.get("connection"))
        body = self._body(connection, request.method, answer, keep_alive, timeouts["read"])
        return httpx.Response(
            answer[0],
            headers=answer[2],
            stream=body,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer[1]},
        )

    async def exchange(
        self,
        method: str,
        origin: Origin,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float | None,
        kind: str = "",
    ) -> Answer:
        """One request whose body is in memory, its answer read whole, without httpx's request and
        response objects: on loopback their URL parsing, header normalising, cookie jar and auth
        flow cost more CPU than the exchange itself (jes's hot paths use this: the Kubernetes JSON
        calls and the Keptn event POSTs; ``make bench``). ``timeout_s`` bounds each phase, as
        ``httpx.Timeout(t)``. See :meth:`open`."""
        timeouts: dict[str, float | None] = dict.fromkeys(("connect", "read", "write", "pool"), timeout_s)
        opened = await self.open(method, origin, target, headers, body, timeouts, kind)
        try:
            content = b"".join([chunk async for chunk in opened.body])
        except BaseException:
            await opened.body.aclose()
            raise
        return Answer(opened.status, opened.reason, opened.headers, content)

    async def open(
        self,
        method: str,
        origin: Origin,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeouts: dict[str, float | None],
        kind: str = "",
    ) -> Opened:
        """One request whose body is in memory; the answer's head, its body a stream (read it to its
        end, or ``aclose()`` it). ``headers`` must not hold Host or Content-Length (they are added).
        ``kind``: requests of one kind take about as long (the routine limit's base is per kind).
        Raises httpx's exceptions, as :meth:`handle_async_request` does."""
        scheme, host, port = origin
        default_port = 443 if scheme == "https" else 80
        name = (f"[{host}]" if ":" in host else host).encode("ascii")  # an IPv6 address in brackets
        host_value = name if port == default_port else b"%s:%d" % (name, port)
        fields = [(b"Host", host_value), *headers]
        if body or method in ("POST", "PUT", "PATCH"):
            fields.append((b"Content-Length", str(len(body)).encode("ascii")))
        connection, (status, reason, answer_headers), keep_alive = await self._start(
            origin, timeouts, request_head(method.encode("ascii"), target, fields), _bytes_body(body), False, kind
        )
        stream = self._body(connection, method, (status, reason, answer_headers), keep_alive, timeouts["read"])
        return Opened(status, reason, answer_headers, stream)

    def _body(
        self,
        connection: _Connection,
        method: str,
        answer: tuple[int, bytes, list[tuple[bytes, bytes]]],
        keep_alive: bool,
        read_timeout_s: float | None,
    ) -> _Body:
        """The answer's body as framed by its head; a head that frames it wrongly (a bad
        ``Content-Length``) gives its connection and its slot back before the error is raised."""
        status, _, headers = answer
        try:
            framing = framing_of(method, status, headers)
        except BaseException:
            self._done(connection, reusable=False)
            raise
        return _Body(self, connection, framing, keep_alive and framing[0] != "close", read_timeout_s)

    async def _start(
        self,
        origin: Origin,
        timeouts: dict[str, float | None],
        head: bytes,
        body: AsyncIterator[bytes],
        chunked: bool,
        kind: str = "",
    ) -> tuple[_Connection, tuple[int, bytes, list[tuple[bytes, bytes]]], bool]:
        """A connection slot, a connection, the request sent and the answer's head read; a request
        of a ``kind`` answered 2xx/3xx tells the routine limit its round trip (a refusal is quick
        for other reasons, and making a connection is no part of the server's queue)."""
        if not self._slots.locked():
            routine = await self._slots.acquire()  # (returns at once: no timer for it)
        else:
            try:  # (held back by a routine limit it waits its turn: each holder's own timeouts bound that)
                async with asyncio.timeout(timeouts["pool"] if self._slots.routine is None else None):
                    routine = await self._slots.acquire()
            except TimeoutError as exc:
                raise httpx.PoolTimeout("no connection became free in time") from exc
        connection: _Connection | None = None
        try:
            connection = self._pooled(origin) or await self._connect(origin, timeouts["connect"])
            connection.routine = routine
            began = time.monotonic()
            await send_request(connection.writer, head, body, chunked, timeouts["write"])
            status, reason, headers, keep_alive = await read_head(connection, timeouts["read"])
            if kind and status < 400:
                self._slots.observe(time.monotonic() - began, kind)
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release(routine)
            raise
        return connection, (status, reason, headers), keep_alive

    def _done(self, connection: _Connection, reusable: bool) -> None:
        if reusable:
            self._release(connection)
        else:
            connection.close()
        self._slots.release(connection.routine)


def _says_close(value: str | None) -> bool:
    return value is not None and "close" in value.lower()


async def _request_body(request: httpx.Request) -> AsyncIterator[bytes]:
    stream = request.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError("the request body is not an async stream (use an httpx.AsyncClient)")
    async for chunk in stream:  # one chunk for json= or content=bytes
        yield chunk


async def _bytes_body(body: bytes) -> AsyncIterator[bytes]:
    yield body


class _Body(httpx.AsyncByteStream):
    """A response body read from its connection as it is consumed; the connection goes back to the
    pool once the body was read to its end (and keep-alive applies), else it is closed."""

    def __init__(
        self,
        transport: LeanTransport,
        connection: _Connection,
        framing: Framing,
        keep_alive: bool,
        timeout_s: float | None,
    ) -> None:
        self._transport = transport
        self._connection: _Connection | None = connection
        self._framing = framing
        self._keep_alive = keep_alive
        self._timeout_s = timeout_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        kind, length = self._framing
        reader = connection.reader
        if kind == "length":
            async for chunk in self._exactly(reader, length):
                yield chunk
        elif kind == "chunked":
            async for chunk in self._chunks(reader):
                yield chunk
        elif kind == "close":
            while True:
                async with reading(self._timeout_s, "the message body"):
                    chunk = await reader.read(CHUNK_BYTES)
                if not chunk:
                    break
                yield chunk
        self._finish(reusable=self._keep_alive and kind != "close")

    async def _chunks(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        while True:
            async with reading(self._timeout_s, "the message body"):
                size_line = await reader.readuntil(b"\r\n")
            size_text = size_line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as exc:
                raise httpx.RemoteProtocolError(f"bad chunk size: {size_text[:20]!r}") from exc
            if size == 0:
                while True:  # trailers, up to the empty line
                    async with reading(self._timeout_s, "the message body"):
                        line = await reader.readuntil(b"\r\n")
                    if line == b"\r\n":
                        return
            async for chunk in self._exactly(reader, size):
                yield chunk
            async with reading(self._timeout_s, "the message body"):
                if await reader.readexactly(2) != b"\r\n":
                    raise httpx.RemoteProtocolError("a chunk does not end with CRLF")

    async def _exactly(self, reader: asyncio.StreamReader, length: int) -> AsyncIterator[bytes]:
        """``length`` bytes of the body, as they arrive."""
        remaining = length
        while remaining:
            if reader._buffer and reader.exception() is None:  # type: ignore[attr-defined]  # here: no timer
                chunk = await reader.read(min(remaining, CHUNK_BYTES))
            else:
                async with reading(self._timeout_s, "the message body"):
                    chunk = await reader.read(min(remaining, CHUNK_BYTES))
            if not chunk:
                async with reading(self._timeout_s, "the message body"):
                    raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(chunk)
            yield chunk

    def _finish(self, *, reusable: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._transport._done(connection, reusable)

    async def aclose(self) -> None:
        """Closed before its end (or after an error): the connection cannot be reused."""
        self._finish(reusable=False)
