"""The lean HTTP/1.1 transport against real sockets: a small asyncio server whose answers each test
scripts (keep-alive, chunked, until-close, stalls, hang-ups), and TLS with a trustme CA."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import trustme

from jes.clients.httptransport import LeanTransport
from jes.util import gates

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]
"""Answers one request (its head and body read); returns whether to keep the connection."""


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                if not await self.handler(reader, writer, head + body):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def answer(status: str, body: bytes, *extra: bytes) -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return b"HTTP/1.1 " + status.encode() + b"\r\ncontent-length: %d\r\n" % len(body) + headers + b"\r\n" + body


async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    writer.write(answer("200 OK", b'{"ok": true}', b"content-type: application/json"))
    await writer.drain()
    return True


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[Server] = []

    async def start(handler: Handler) -> Server:
        server = Server(handler)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def client(keepalive_expiry_s: float = 4.0) -> httpx.AsyncClient:
    transport = LeanTransport(max_connections=2, keepalive_expiry_s=keepalive_expiry_s)
    return httpx.AsyncClient(transport=transport, timeout=5.0)


async def test_requests_share_a_kept_alive_connection_and_bodies_arrive(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(ok)
    async with client() as http:
        for k in range(3):
            response = await http.post(f"http://127.0.0.1:{server.port}/api/v1/event?k={k}", json={"n": k})
            assert response.status_code == 200 and response.json() == {"ok": True}
    assert server.connections == 1
    assert server.requests[2].startswith(b"POST /api/v1/event?k=2 HTTP/1.1\r\n")
    assert server.requests[2].endswith(b'{"n":2}')
    assert b"\r\nhost: 127.0.0.1:" in server.requests[0].lower()


async def test_a_connection_the_server_closed_while_idle_is_not_reused(serve) -> None:  # type: ignore[no-untyped-def]
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        await ok(reader, writer, request)
        return False  # the server hangs up after each answer, without saying so (as at keep-alive expiry)

    server = await serve(once)
    async with client() as http:
        for _ in range(3):
            assert (await http.get(f"http://127.0.0.1:{server.port}/")).status_code == 200
            await asyncio.sleep(0.05)  # the FIN arrives while the connection is idle
    assert server.connections == 3


async def test_idle_connections_expire(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(ok)
    async with client(keepalive_expiry_s=0.05) as http:
        await http.get(f"http://127.0.0.1:{server.port}/")
        await asyncio.sleep(0.1)
        await http.get(f"http://127.0.0.1:{server.port}/")
    assert server.connections == 2


async def test_chunked_and_until_close_bodies_are_streamed(serve) -> None:  # type: ignore[no-untyped-def]
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        if b"/close" in request:
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
            await writer.drain()
            return False
        writer.write(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nt: 1\r\n\r\n"
        )
        await writer.drain()
        return True

    server = await serve(chunked)
    async with client() as http:
        url = f"http://127.0.0.1:{server.port}"
        async with http.stream("GET", url + "/chunked") as response:
            assert b"".join([chunk async for chunk in response.aiter_raw()]) == b"hello world"
        assert (await http.get(url + "/chunked")).text == "hello world"
        assert server.connections == 1  # chunked bodies read to their end keep the connection
        assert (await http.get(url + "/close")).text == "until the end"
        assert (await http.get(url + "/chunked")).text == "hello world"
    assert server.connections == 2


async def test_a_body_left_unread_closes_its_connection(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(ok)
    async with client() as http:
        async with http.stream("GET", f"http://127.0.0.1:{server.port}/"):
            pass
        await http.get(f"http://127.0.0.1:{server.port}/")
    assert server.connections == 2


async def test_errors_are_httpx_errors_that_say_whether_the_request_was_sent(serve) -> None:  # type: ignore[no-untyped-def]
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        return False

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        await asyncio.sleep(5)
        return False

    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
        await writer.drain()
        return False

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        writer.write(b"<html>502 Bad Gateway</html>\r\n\r\n")
        await writer.drain()
        return False

    async with client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.post(f"http://127.0.0.1:{(await serve(hang_up)).port}/", json={})
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"http://127.0.0.1:{(await serve(stall)).port}/", json={}, timeout=0.2)
        with pytest.raises(httpx.RemoteProtocolError, match="complete"):
            await http.get(f"http://127.0.0.1:{(await serve(truncated)).port}/")
        with pytest.raises(httpx.RemoteProtocolError, match="status line"):
            await http.get(f"http://127.0.0.1:{(await serve(garbage)).port}/")
        closed = await serve(ok)
        port = closed.port
        await closed.stop()
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


async def bad_length(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n")
    await writer.drain()
    return False


async def test_an_answer_with_a_bad_length_gives_its_connection_slot_back(serve) -> None:  # type: ignore[no-untyped-def]
    bad, good = await serve(bad_length), await serve(ok)
    async with client() as http:
        for _ in range(3):  # more than the pool's 2 connections: each must come back
            with pytest.raises(httpx.RemoteProtocolError, match="bad Content-Length"):
                await http.get(f"http://127.0.0.1:{bad.port}/", timeout=httpx.Timeout(5.0, pool=0.5))
        answer = await http.get(f"http://127.0.0.1:{good.port}/", timeout=httpx.Timeout(5.0, pool=0.5))
        assert answer.json() == {"ok": True}


async def test_the_pool_limits_connections_and_waits_for_a_free_one(serve) -> None:  # type: ignore[no-untyped-def]
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        await asyncio.sleep(0.05)
        return await ok(reader, writer, request)

    server = await serve(slow)
    async with client() as http:
        answers = await asyncio.gather(*(http.get(f"http://127.0.0.1:{server.port}/") for _ in range(6)))
        assert all(a.status_code == 200 for a in answers)
        assert server.connections == 2  # max_connections
        async with (
            http.stream("GET", f"http://127.0.0.1:{server.port}/"),
            http.stream("GET", f"http://127.0.0.1:{server.port}/"),
        ):
            with pytest.raises(httpx.PoolTimeout):
                await http.get(f"http://127.0.0.1:{server.port}/", timeout=httpx.Timeout(5.0, pool=0.1))


async def test_a_cancelled_request_does_not_leave_its_connection_in_the_pool(serve) -> None:  # type: ignore[no-untyped-def]
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        await asyncio.sleep(0.3)
        return await ok(reader, writer, request)

    server = await serve(slow)
    async with client() as http:
        task = asyncio.create_task(http.get(f"http://127.0.0.1:{server.port}/"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the late answer to the cancelled request must not be taken for this one's
        assert (await http.get(f"http://127.0.0.1:{server.port}/")).json() == {"ok": True}
    assert server.connections == 2


async def test_tls_with_the_given_context(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    server = Server(ok)
    await server.start(tls=server_context)
    try:
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        async with httpx.AsyncClient(transport=LeanTransport(ssl_context=trusting)) as http:
            assert (await http.get(f"https://127.0.0.1:{server.port}/")).status_code == 200
        async with httpx.AsyncClient(transport=LeanTransport(ssl_context=ssl.create_default_context())) as http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(f"https://127.0.0.1:{server.port}/")
    finally:
        await server.stop()


async def test_connections_are_reused_when_descriptors_are_numbered_beyond_1024(serve) -> None:  # type: ignore[no-untyped-def]
    """select() refuses descriptors from 1024 on; a busy jes has that many sockets open."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the open-file limit ({hard}) is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        server = await serve(ok)
        async with client() as http:
            for _ in range(3):
                assert (await http.get(f"http://127.0.0.1:{server.port}/")).status_code == 200
        assert server.connections == 1
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def held_until(release: asyncio.Event, marker: bytes) -> Handler:
    """Answers as :func:`ok` does, the requests with ``marker`` in them once ``release`` is set."""

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        if marker in request:
            await release.wait()
        return await ok(reader, writer, request)

    return held


async def test_urgent_work_gets_the_next_free_connection(serve) -> None:  # type: ignore[no-untyped-def]
    release = asyncio.Event()
    server = await serve(held_until(release, b"?first"))
    url = f"http://127.0.0.1:{server.port}/"
    async with httpx.AsyncClient(transport=LeanTransport(max_connections=1), timeout=5.0) as http:
        first = asyncio.create_task(http.get(url + "?first"))
        await asyncio.sleep(0.05)
        normal = asyncio.create_task(http.get(url + "?normal"))
        await asyncio.sleep(0.05)
        with gates.urgent():  # (an event's finishing path)
            urgent = asyncio.create_task(http.get(url + "?urgent"))
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first, normal, urgent)
    assert [r.split(b" ")[1] for r in server.requests] == [b"/?first", b"/?urgent", b"/?normal"]


async def test_routine_requests_wait_at_the_routine_limit_while_urgent_ones_go_out(serve) -> None:  # type: ignore[no-untyped-def]
    release = asyncio.Event()
    server = await serve(held_until(release, b"?routine"))
    limit = gates.RoutineLimit(1, floor=1)  # (one routine request at a time, whatever it learns)
    transport = LeanTransport(max_connections=4, routine=limit)
    origin = ("http", "127.0.0.1", server.port)

    async def get(query: bytes) -> int:
        return (await transport.exchange("GET", origin, b"/?" + query, [], b"", 5.0, kind="get things")).status

    try:
        routine = [asyncio.create_task(get(b"routine-%d" % k)) for k in range(3)]
        async with asyncio.timeout(5):
            while not server.requests or len(transport._slots._waiting) < 2:
                await asyncio.sleep(0.01)
        assert len(server.requests) == 1 and transport._slots._routine_held == 1  # two held back
        with gates.urgent():
            assert await asyncio.wait_for(get(b"urgent"), 2) == 200  # a free connection: out at once
        assert len(server.requests) == 2 and transport._slots._routine_held == 1
        release.set()
        assert await asyncio.gather(*routine) == [200, 200, 200]
    finally:
        await transport.aclose()
    assert len(limit._kinds["get things"]._samples) == 4  # every answer's round trip was learnt from
    assert transport._slots._routine_held == 0 and not transport._slots.locked()


async def test_only_accepted_requests_of_a_kind_teach_the_routine_limit(serve) -> None:  # type: ignore[no-untyped-def]
    async def not_found(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        writer.write(answer("404 Not Found", b"{}"))
        await writer.drain()
        return True

    found, missing = await serve(ok), await serve(not_found)
    limit = gates.RoutineLimit(4)
    transport = LeanTransport(max_connections=2, routine=limit)
    try:
        # a refusal is quick for reasons of its own; a request of no kind (a log read) is no sample
        await transport.exchange("GET", ("http", "127.0.0.1", missing.port), b"/", [], b"", 5.0, kind="get x")
        await transport.exchange("GET", ("http", "127.0.0.1", found.port), b"/", [], b"", 5.0)
        assert limit._kinds == {}
        await transport.exchange("GET", ("http", "127.0.0.1", found.port), b"/", [], b"", 5.0, kind="get x")
        assert len(limit._kinds["get x"]._samples) == 1
    finally:
        await transport.aclose()


async def test_a_routine_request_that_fails_gives_its_routine_place_back(serve) -> None:  # type: ignore[no-untyped-def]
    bad, good, closed = await serve(bad_length), await serve(ok), await serve(ok)
    await closed.stop()
    transport = LeanTransport(max_connections=2, routine=gates.RoutineLimit(2))
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as http:
        for _ in range(3):  # more than the limit: each failed request gives its place back
            with pytest.raises(httpx.RemoteProtocolError, match="bad Content-Length"):
                await http.get(f"http://127.0.0.1:{bad.port}/", timeout=httpx.Timeout(5.0, pool=0.5))
        with pytest.raises(httpx.ConnectError):  # (nothing listens there: failed before sending)
            await http.get(f"http://127.0.0.1:{closed.port}/", timeout=httpx.Timeout(5.0, pool=0.5))
        answer = await http.get(f"http://127.0.0.1:{good.port}/", timeout=httpx.Timeout(5.0, pool=0.5))
        assert answer.json() == {"ok": True}
    assert transport._slots._routine_held == 0

