"""``jes run``: handle one event from files, print the events jes would send.

The same handler as ``jes serve`` with a config file instead of the resource service, a folder
instead of service resources, an in-memory ledger, and events printed as JSON lines on stdout.
Task output streams to stderr as it arrives.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from jes import ledger, settings
from jes.commands import localsources
from jes.matcher import config as cfg
from jes.matcher import matching as matcher
from jes.reporter import delivery as reporter
from jes.reporter import events
from jes.runner import base as runner_base
from jes.runner import choice
from jes.service import handler


def stderr_sink(stream: TextIO) -> runner_base.LogSink:
    def write(container: str, chunk: bytes) -> None:
        stream.write(chunk.decode("utf-8", errors="replace"))
        stream.flush()

    return write


def progress_lines(err: TextIO) -> Callable[[dict[str, Any]], None]:
    """A line on stderr per progress event and per ``.finished``: coloured (rich) on a terminal,
    plain ``jes: ...`` lines otherwise (logs, CI)."""
    console = Console(file=err, highlight=False, soft_wrap=True) if err.isatty() else None

    def show(event: dict[str, Any]) -> None:
        line = _progress_text(event)
        if line is None:
            return
        if console is None:
            err.write(f"jes: {line}\n")
            err.flush()
            return
        console.print(_styled(event, line))

    return show


def _progress_text(event: dict[str, Any]) -> str | None:
    event_type = str(event.get("type", ""))
    data = event.get("data") or {}
    if event_type.endswith(".status.changed"):
        return str(data.get("message", ""))
    if event_type.endswith(".finished"):
        return f"{event_type.removeprefix('sh.keptn.event.')}: {data.get('status')}/{data.get('result')}"
    return None


def _styled(event: dict[str, Any], line: str) -> Text:
    task = (event.get("data") or {}).get("jes", {}).get("task", {})
    status = task.get("status") or (event.get("data") or {}).get("result")
    mark, style = {
        None: ("▶", "bold cyan"),
        "succeeded": ("✓", "bold green"),
        "pass": ("✓", "bold green"),
        "warning": ("!", "bold yellow"),
    }.get(status, ("✗", "bold red"))
    return Text.assemble((f"{mark} ", style), (line, "bold" if str(event.get("type")).endswith(".finished") else ""))


@contextlib.asynccontextmanager
async def open_runner(current: settings.Settings, name: str) -> AsyncIterator[runner_base.Runner]:
    """A started runner of the given kind; a local one keeps its state in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="jes-run-") as state_dir:
        chosen = current.with_overrides(runner=name, state_dir=state_dir)
        kube = choice.kube_client_for(chosen)
        runner = choice.build_runner(chosen, kube)
        await runner.start()
        try:
            yield runner
        finally:
            await runner.close()
            if kube is not None:
                kube.close()


async def run_once(
    current: settings.Settings,
    loaded: cfg.LoadedConfig,
    event: dict[str, Any],
    *,
    runner_name: str,
    resources_root: str,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Exit code: 0 when every finished event succeeded (or nothing ran), 1 otherwise; a
    ``succeeded/warning`` event (an ``onError: warning`` task failed) counts as succeeded."""
    printer = reporter.PrintReporter(out, on_event=progress_lines(err))
    async with open_runner(current, runner_name) as runner:
        handle = handler.EventHandler(
            configs=localsources.FileConfig(loaded),
            files=localsources.DirectoryFiles(resources_root),
            runner=runner,
            reporter=printer,
            store=ledger.MemoryLedger(),
            executor=matcher.executor_from_settings(current),
            identity=events.Identity(source=current.event_source, executor=current.executor_id),
            max_event_bytes=current.max_event_bytes,
            on_log=stderr_sink(err),
        )
        result = await handle.handle(event)
    if result.outcome == "no_match":
        err.write("jes: no action matches this event; nothing ran and no events would be sent\n")
    finished = [e for e in printer.events if e.get("type", "").endswith(".finished")]
    return 0 if all(e["data"].get("status") == "succeeded" for e in finished) else 1
