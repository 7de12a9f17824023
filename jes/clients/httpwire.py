"""HTTP/1.1 on the wire for :mod:`jes.clients.httptransport` (RFC 9112): requests written,
response heads read and framed, with httpx's exception types."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Protocol

import httpx

#: Largest status line + headers accepted (as httpcore/h11: 64 KiB).
MAX_HEAD_BYTES = 64 * 1024


class HasReader(Protocol):
    reader: asyncio.StreamReader


@contextlib.asynccontextmanager
async def reading(timeout_s: float | None, what: str) -> AsyncIterator[None]:
    """httpx's errors for a read: timeout, connection error, or the peer closing too early."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError as exc:
        raise httpx.ReadTimeout(f"reading {what} timed out") from exc
    except asyncio.IncompleteReadError as exc:
        if what == "the response" and not exc.partial:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from exc
        raise httpx.RemoteProtocolError(f"peer closed connection without sending complete {what}") from exc
    except asyncio.LimitOverrunError as exc:
        raise httpx.RemoteProtocolError(f"{what}: headers too large") from exc
    except (OSError, ssl.SSLError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


async def read_head(
    connection: HasReader, timeout_s: float | None
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
    """Status, reason, headers and whether HTTP/1.x keep-alive applies; 1xx answers skipped."""
    while True:
        async with reading(timeout_s, "the response"):
            try:
                head = await connection.reader.readuntil(b"\r\n\r\n")
            except ValueError as exc:  # readuntil: the separator not within the limit
                raise asyncio.LimitOverrunError(str(exc), MAX_HEAD_BYTES) from exc
        status_line, *header_lines = head[:-4].split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise httpx.RemoteProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(parts[1])
        headers = []
        for line in header_lines:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise httpx.RemoteProtocolError(f"malformed response header: {line[:80]!r}")
            headers.append((name, value.strip()))
        if 100 <= status < 200 and status != 101:
            continue  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        keep_alive = parts[0] == b"HTTP/1.1"
        for name, value in headers:
            if name.lower() == b"connection":
                lowered = value.lower()
                keep_alive = b"close" not in lowered and (keep_alive or b"keep-alive" in lowered)
        return status, parts[2] if len(parts) > 2 else b"", headers, keep_alive


Framing = tuple[str, int]


def framing_of(method: str, status: int, headers: list[tuple[bytes, bytes]]) -> Framing:
    """How the body ends (RFC 9112 §6.3): ("none", 0), ("length", n), ("chunked", 0), ("close", 0)."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return ("none", 0)
    length: int | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            if value.lower().rsplit(b",", 1)[-1].strip() == b"chunked":
                return ("chunked", 0)
            return ("close", 0)
        if lowered == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise httpx.RemoteProtocolError(f"bad Content-Length: {value[:40]!r}")
            length = int(value)
    return ("length", length) if length is not None else ("close", 0)


def request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def send_request(
    writer: asyncio.StreamWriter, head: bytes, body: AsyncIterator[bytes], chunked: bool, timeout_s: float | None
) -> None:
    """A request's head and body written (chunked: each chunk framed), httpx's errors on failure."""
    try:
        writer.write(head)
        async for chunk in body:
            if chunk:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                await drained(writer, timeout_s)
        if chunked:
            writer.write(b"0\r\n\r\n")
        await drained(writer, timeout_s)
    except TimeoutError as exc:
        raise httpx.WriteTimeout("sending the request timed out") from exc
    except (OSError, ssl.SSLError) as exc:
        raise httpx.WriteError(str(exc) or type(exc).__name__) from exc


async def drained(writer: asyncio.StreamWriter, timeout_s: float | None) -> None:
    """Until the socket took what was written; with a timer only when it has not yet (most requests
    go out whole at once: a timer for each would cost more than the write)."""
    if writer.transport.get_write_buffer_size() or writer.transport.is_closing():
        async with asyncio.timeout(timeout_s):
            await writer.drain()
