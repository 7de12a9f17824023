"""``jes serve`` as a separate process, and what the benchmark reads about it from /proc.

RSS and CPU figures are jes's alone: the fakes and the benchmark live in other processes.
``/proc/<pid>/status`` gives ``VmRSS`` (now) and ``VmHWM`` (peak since start, or since
:meth:`JesProcess.reset_peak` wrote ``5`` to ``/proc/<pid>/clear_refs``); ``/proc/<pid>/stat``
gives user + system CPU time of all its threads.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
#: How jes is started (the installed package, exactly as ``jes serve``); experiments may replace it.
JES_COMMAND = [sys.executable, "-m", "jes.cli", "serve"]
KIB_PER_MIB = 1024


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def jes_environment(
    *,
    endpoint: str,
    token: str,
    kubeconfig: Path,
    topics: tuple[str, ...],
    health_port: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of ``jes serve``: kubernetes runner (Lease ledger) against the fake API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEPTN_", "JES_", "PUBSUB", "KUBECONFIG"))}
    env.update(
        {
            "KEPTN_API_ENDPOINT": endpoint,
            "KEPTN_API_TOKEN": token,
            "PUBSUB_TOPIC": ",".join(topics),
            "HTTP_POLLING_INTERVAL": "1",
            "JES_RUNNER": "kubernetes",
            "KUBECONFIG": str(kubeconfig),
            "K8S_NAMESPACE": "keptn-jes",
            "K8S_POD_NAME": "jes-bench-0",
            "JOB_NAMESPACE": "keptn-jes",
            "HEALTH_ENDPOINT_PORT": str(health_port),
            "JES_LOG_FORMAT": "json",
            "JES_SHUTDOWN_GRACE_S": "2",
        }
    )
    env.update(extra or {})
    return env


class JesProcess:
    """One ``jes serve`` child; use as a context manager (it is killed on exit)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.health_port = int(env["HEALTH_ENDPOINT_PORT"])
        self.process: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(timeout=5.0)
        self.slowest_metrics_s = 0.0
        """The longest ``/metrics`` answer seen (the health server shares jes's event loop)."""

    def __enter__(self) -> JesProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(JES_COMMAND, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._http.close()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("jes is not started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    # -- health and metrics -------------------------------------------------------------------

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until ``/ready`` answers 200 (registered with the control plane, polling)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.process.returncode if self.process else "?"
                raise RuntimeError(f"jes exited with {code}; see {self.log}")
            try:
                if self._http.get(f"http://127.0.0.1:{self.health_port}/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"jes was not ready within {timeout_s:g}s; see {self.log}")

    def metric(self, name: str, *, timeout_s: float = 60.0) -> float:
        """The sum of every sample of a metric family from ``/metrics`` (0 when absent)."""
        began = time.monotonic()
        text = self._http.get(f"http://127.0.0.1:{self.health_port}/metrics", timeout=timeout_s).text
        self.slowest_metrics_s = max(self.slowest_metrics_s, time.monotonic() - began)
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    # -- /proc --------------------------------------------------------------------------------

    def _status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def rss_mib(self) -> float:
        return self._status_kib("VmRSS") / KIB_PER_MIB

    def peak_rss_mib(self) -> float:
        return self._status_kib("VmHWM") / KIB_PER_MIB

    def reset_peak(self) -> bool:
        """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False if not allowed."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def threads(self) -> int:
        return self._status_kib("Threads")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process (all threads) so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S
