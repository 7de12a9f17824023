"""The fake API server's own HTTP/1.1 protocol (fakes/fake_kube/_wire.py) over a raw socket."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from fakes.fake_kube._routes import Route, Router
from fakes.fake_kube._wire import LeanHttpProtocol
from jes.devtools.doubles.server import ThreadedServer


async def _echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"method": request.method, "body": body.decode(), "query": str(request.query_params)})


async def _stream(request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        yield b"one\n"
        yield b"two\n"

    return StreamingResponse(parts(), media_type="text/plain")


@pytest.fixture
def server() -> Iterator[ThreadedServer]:
    routes = [Route("/echo", _echo, methods=["GET", "POST"]), Route("/stream", _stream, methods=["GET"])]
    threaded = ThreadedServer(lambda: Router(routes), name="wire-test", http=LeanHttpProtocol, timeout_keep_alive=0.3)
    threaded.start()
    yield threaded
    threaded.stop(timeout_s=5)


def _connect(server: ThreadedServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return sock


def _read_answer(sock: socket.socket) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """(status line, headers, body) of one answer (Content-Length or chunked)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        while len(rest) < length:
            rest += sock.recv(65536)
        return status, headers, rest[:length]
    while not rest.endswith(b"0\r\n\r\n"):
        rest += sock.recv(65536)
    body = b""
    while True:
        size_text, _, rest = rest.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            return status, headers, body
        body, rest = body + rest[:size], rest[size + 2 :]


def test_keeps_the_connection_for_the_next_request(server: ThreadedServer) -> None:
    with _connect(server) as sock:
        for n in range(3):
            sock.sendall(b"GET /echo?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
            status, headers, body = _read_answer(sock)
            assert status == b"HTTP/1.1 200 OK"
            assert json.loads(body)["query"] == f"n={n}"
            assert b"date" in headers and b"connection" not in headers


def test_reads_content_length_and_chunked_bodies(server: ThreadedServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel")
        time.sleep(0.05)  # the body in two segments
        sock.sendall(b"lo")
        assert json.loads(_read_answer(sock)[2])["body"] == "hello"
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        assert json.loads(_read_answer(sock)[2])["body"] == "abcde"


def test_streams_chunked_answers(server: ThreadedServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        _, headers, body = _read_answer(sock)
        assert headers[b"transfer-encoding"] == b"chunked"
        assert body == b"one\ntwo\n"


def test_connection_close_is_honoured(server: ThreadedServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        _, headers, _ = _read_answer(sock)
        assert headers[b"connection"] == b"close"
        assert sock.recv(100) == b""


def test_continues_when_asked_to(server: ThreadedServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"ok")
        assert json.loads(_read_answer(sock)[2])["body"] == "ok"


def test_refuses_what_is_no_http_request(server: ThreadedServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        status, headers, body = _read_answer(sock)
        assert (status, headers[b"connection"], body) == (
            b"HTTP/1.1 400 Bad Request",
            b"close",
            b"Invalid HTTP request received.",
        )


def test_closes_a_connection_idle_past_the_keep_alive_timeout(server: ThreadedServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        _read_answer(sock)
        time.sleep(0.15)  # busy again before the timeout: the timeout counts from the next answer
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        _read_answer(sock)
        time.sleep(0.2)
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")  # 0.35 s since the first, 0.2 since the last
        assert _read_answer(sock)[0] == b"HTTP/1.1 200 OK"
        began = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server
        assert time.monotonic() - began > 0.1  # not at once: after the timeout (the socket gives up at 5 s)
