"""The ``jes`` command. A thin shell: the work happens in the modules it calls.

Exit codes: 0 success, 1 the input is invalid (or, for ``run``, a task failed), 2 usage or
settings errors.
"""

from __future__ import annotations

import sys

if sys.argv[1:2] in (["serve"], ["distributor"]):  # before the slow imports: a SIGTERM now must not kill jes uncleanly
    from jes.commands import signals

    signals.install_early()

import json
import os
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from jes import __version__, errors, settings
from jes.commands import authoring
from jes.matcher import config as cfg
from jes.matcher import matching as matcher
from jes.models import Plan
from jes.runner.kubernetes import manifests
from jes.util import parsing


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message.rstrip("\n"), err=True)
    sys.exit(code)


def _fail_problems(command: str, exc: errors.SettingsError) -> NoReturn:
    """One line per problem, each naming the command: what is wrong and how to fix it."""
    _fail("\n".join(f"jes {command}: {problem}" for problem in exc.problems))


def load_settings(**overrides: Any) -> settings.Settings:
    """Settings from the environment plus flags; a bad value ends the command with exit 2."""
    try:
        return settings.load(**overrides)
    except errors.SettingsError as exc:
        _fail(f"jes: {exc}", code=2)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="jes")
def main() -> None:
    """jes - a Keptn job executor service.

    Authoring: validate, match, explain, render, schema. Running: run, serve.
    Development: control-plane, demo.
    """


# ---------------------------------------------------------------------------------------------
# Authoring


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--allowed-images", metavar="LIST", help="comma list of image globs (default: ALLOWED_IMAGE_LIST)")
@click.option("--allow-privileged-jobs", is_flag=True, default=None, help="accept privileged containers")
@click.option(
    "--protected-secrets", metavar="LIST", help="Secrets with jes's credentials (default: JES_PROTECTED_SECRETS)"
)
@click.option(
    "--protected-service-accounts",
    metavar="LIST",
    help="jes's own service accounts (default: JES_PROTECTED_SERVICE_ACCOUNTS)",
)
@click.option(
    "--allowed-volume-claims",
    metavar="LIST",
    help="comma list of globs of the PersistentVolumeClaims tasks may mount (default: JES_ALLOWED_VOLUME_CLAIMS)",
)
def validate(
    files: tuple[str, ...],
    allowed_images: str | None,
    allow_privileged_jobs: bool | None,
    protected_secrets: str | None,
    protected_service_accounts: str | None,
    allowed_volume_claims: str | None,
) -> None:
    """Check job/config.yaml files; print FILE:LINE:COL: problems (and warnings), exit 1 if any."""
    overrides: dict[str, Any] = {"allow_privileged_jobs": allow_privileged_jobs}
    if allowed_images is not None:
        overrides["allowed_image_list"] = settings.image_list(allowed_images)
    if protected_secrets is not None:
        overrides["protected_secrets"] = parsing.comma_list(protected_secrets)
    if protected_service_accounts is not None:
        overrides["protected_service_accounts"] = parsing.comma_list(protected_service_accounts)
    if allowed_volume_claims is not None:
        overrides["allowed_volume_claims"] = parsing.comma_list(allowed_volume_claims)
    current = load_settings(**overrides)
    check_images = allowed_images is not None or "ALLOWED_IMAGE_LIST" in os.environ
    policy = authoring.policy_of(current, check_images=check_images)
    failed = False
    for path in files:
        try:
            loaded = authoring.read_config(path, policy=policy, max_bytes=current.max_config_bytes)
        except errors.ConfigError as exc:
            failed = True
            for problem in _with_warnings(exc.problems, exc.warnings):
                click.echo(problem)
            continue
        for line in _with_warnings((), loaded.warnings):
            click.echo(line)
        click.echo(f"{path}: valid")
    sys.exit(1 if failed else 0)


def _with_warnings(problems: Sequence[errors.Problem], warnings: Sequence[errors.Problem]) -> list[str]:
    """Problems and warnings of one file in one list, by position."""
    tagged = [(p, "") for p in problems] + [(w, "warning: ") for w in warnings]
    tagged.sort(key=lambda item: (item[0].line, item[0].column))
    return [f"{p.file}:{p.line}:{p.column}: {tag}{p.path + ': ' if p.path else ''}{p.message}" for p, tag in tagged]


def _inputs(config_path: str, event_path: str) -> tuple[cfg.LoadedConfig, dict[str, Any]]:
    try:
        loaded = authoring.read_config(config_path, max_bytes=load_settings().max_config_bytes)
    except errors.ConfigError as exc:
        _fail(str(exc))
    notes: list[str] = []
    try:
        event = authoring.read_event(event_path, notes)
    except errors.EventError as exc:
        _fail(str(exc))
    for note in notes:
        click.echo(f"jes: {note}", err=True)
    return loaded, event


BLOCKED_EXIT = 3
"""``jes match``/``jes render``: an action matched but cannot run for this event (0: it can, or nothing
matched; 1: invalid input)."""


_config_option = click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False), help="job/config.yaml"
)
_event_option = click.option(
    "--event", "event_path", required=True, type=click.Path(dir_okay=False), help="a Keptn CloudEvent as JSON"
)
_location_option = click.option("--location", default=None, help="this executor's location (default: LOCATION)")


@main.command()
@_config_option
@_event_option
@_location_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def match(config_path: str, event_path: str, location: str | None, as_json: bool) -> None:
    """Which actions run for an event, with every task rendered."""
    current = load_settings(location=location)
    loaded, event = _inputs(config_path, event_path)
    result = matcher.plan(loaded, event, matcher.executor_from_settings(current))
    if as_json:
        click.echo(json.dumps(authoring.match_document(result), indent=2))
    else:
        click.echo(authoring.match_text(result), nl=False)
    sys.exit(BLOCKED_EXIT if authoring.blocked(result) else 0)


@main.command()
@_config_option
@_event_option
@_location_option
def explain(config_path: str, event_path: str, location: str | None) -> None:
    """Why every action and event entry matches or not."""
    current = load_settings(location=location)
    loaded, event = _inputs(config_path, event_path)
    click.echo(authoring.explain_text(loaded, event, location=current.location), nl=False)


@main.command()
@_config_option
@_event_option
@_location_option
@click.option("--namespace", default=None, help="namespace of the Jobs (default: JOB_NAMESPACE)")
def render(config_path: str, event_path: str, location: str | None, namespace: str | None) -> None:
    """The batch/v1 Job manifests jes would create, as multi-document YAML (a dry run)."""
    current = load_settings(location=location, job_namespace=namespace)
    loaded, event = _inputs(config_path, event_path)
    result = matcher.plan(loaded, event, matcher.executor_from_settings(current))
    click.echo(authoring.render_documents(result, manifests.JobSettings.from_settings(current)), nl=False)
    sys.exit(BLOCKED_EXIT if authoring.blocked(result) else 0)


@main.command()
def schema() -> None:
    """JSON Schema of job/config.yaml (for editors)."""
    click.echo(json.dumps(cfg.json_schema(), indent=2))


@main.command()
@_config_option
@_event_option
@_location_option
@click.option(
    "--runner",
    "runner_name",
    type=click.Choice(["local", "kubernetes"]),
    default=None,
    help="where tasks run (default: JES_RUNNER)",
)
@click.option(
    "--resources",
    type=click.Path(file_okay=False),
    default=None,
    help="folder standing in for the service's resources (files); default: the folder above job/",
)
@click.option(
    "--yes", "-y", is_flag=True, help="with the local runner: run the config's commands here without asking"
)
def run(
    config_path: str,
    event_path: str,
    location: str | None,
    runner_name: str | None,
    resources: str | None,
    yes: bool,
) -> None:
    """Run the matching actions once; events as JSON lines on stdout, task logs on stderr.

    The local runner runs the tasks' commands on this machine: jes shows them and asks first (no
    terminal to ask on: it refuses, exit 2, unless --yes). Exit 0 when every finished event is
    succeeded (or nothing ran), 1 otherwise.
    """
    import asyncio

    from jes.commands import localsources
    from jes.commands import run as oneshot

    current = load_settings(location=location, runner=runner_name)
    loaded, event = _inputs(config_path, event_path)
    if current.runner == "local":
        _confirm_local_run(matcher.plan(loaded, event, matcher.executor_from_settings(current)), yes=yes)
    root = resources or str(localsources.default_resources_root(config_path))
    try:
        code = asyncio.run(oneshot.run_once(current, loaded, event, runner_name=current.runner, resources_root=root))
    except errors.JesError as exc:
        _fail(f"jes: {exc}")
    sys.exit(code)


def _confirm_local_run(result: Plan, *, yes: bool) -> None:
    """Show what the local runner would run on this machine; ask unless ``yes`` (refuse without a terminal)."""
    commands = authoring.local_commands(result)
    if not commands:
        return
    click.echo("jes run --runner local runs these commands on this machine, as you (no container):", err=True)
    for line in commands:
        click.echo(f"  {line}", err=True)
    if yes:
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        _fail("jes run: not run — no terminal to ask on; add --yes to run them, or use --runner kubernetes", code=2)
    if not click.confirm("Run them?", default=False, err=True):
        _fail("jes run: not run", code=2)


def _settings_epilog() -> str:
    rows = "\n".join(f"  {name:34} {doc}" for name, doc in settings.SETTINGS_DOC)
    return "\b\nSettings (environment variables; flags override them):\n" + rows


@main.command(epilog=_settings_epilog())
@click.option("--runner", "runner_name", type=click.Choice(["kubernetes", "local"]), default=None, help="JES_RUNNER")
@click.option("--location", default=None, help="LOCATION")
@click.option("--health-port", type=int, default=None, help="HEALTH_ENDPOINT_PORT")
@click.option("--log-format", type=click.Choice(["json", "console"]), default=None, help="JES_LOG_FORMAT")
@click.option("--once", is_flag=True, help="poll every subscription once, handle what was found, exit")
def serve(
    runner_name: str | None, location: str | None, health_port: int | None, log_format: str | None, once: bool
) -> None:
    """Run the executor service: poll the control plane, run tasks, report back."""
    from jes.commands import serve as serving

    current = load_settings(
        runner=runner_name, location=location, health_endpoint_port=health_port, log_format=log_format
    )
    try:
        settings.require_serve(current)
    except errors.SettingsError as exc:
        _fail(f"jes: {exc}", code=2)
    sys.exit(serving.serve(current, once=once))


def _distributor_epilog() -> str:
    from jes.distributor import config as dconfig

    rows = "\n".join(f"  {v.env:32} {v.doc}" for v in dconfig.VARIABLES)
    return "\b\nVariables (the Keptn distributor's, then jes's own; docs/distributor.md has the details):\n" + rows


@main.command(epilog=_distributor_epilog())
def distributor() -> None:
    """The Keptn distributor as a drop-in (configured by its environment variables).

    Forwards events to PUBSUB_RECIPIENT (NATS when KEPTN_API_ENDPOINT is empty, HTTP polling
    otherwise) and serves the API proxy, /event and /health on 127.0.0.1:API_PROXY_PORT. Exit 1
    for a bad variable (one line each), 0 after SIGTERM.
    """
    from jes.commands import distributor as distributing

    sys.exit(distributing.main())


@main.command(name="control-plane")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option("--token", default="local-token", show_default=True, help="the x-token clients must send")
@click.option("--seed", "seed_dir", type=click.Path(file_okay=False, exists=True), default=None, help="seed directory")
@click.option("--hello-world", is_flag=True, help="seed with the hello-world of `jes demo` (shipped with jes)")
@click.option(
    "--datastore-lag-s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="seconds before an accepted event shows in the datastore (Keptn fills it asynchronously)",
)
@click.option(
    "--no-pagination-bug",
    is_flag=True,
    help="page the triggered-events list correctly (Keptn 0.16-1.4.5 repeat the first page)",
)
@click.option(
    "--nats",
    "nats_url",
    default=None,
    metavar="URL",
    help="also speak NATS, as Keptn does in-cluster: publish events there, take integrations' events from it",
)
def control_plane(
    host: str,
    port: int,
    token: str,
    seed_dir: str | None,
    hello_world: bool,
    datastore_lag_s: float,
    no_pagination_bug: bool,
    nats_url: str | None,
) -> None:
    """A local Keptn control plane (API, shipyard controller, resources, datastore) for development."""
    from jes.devtools import examples
    from jes.devtools.controlplane import server

    if hello_world and seed_dir is not None:
        raise click.UsageError("--seed and --hello-world exclude each other")
    if hello_world:
        seed_dir = str(examples.HELLO_WORLD_SEED)
    try:
        server.run_control_plane(
            host=host,
            port=port,
            token=token,
            seed_dir=seed_dir,
            datastore_lag_s=datastore_lag_s,
            pagination_bug=not no_pagination_bug,
            nats_url=nats_url,
        )
    except errors.SettingsError as exc:
        _fail_problems("control-plane", exc)


@main.command()
def check() -> None:
    """Check KEPTN_API_ENDPOINT and KEPTN_API_TOKEN: can jes reach and use the control plane?"""
    from jes.commands import serve as serving

    current = load_settings()
    if not current.keptn_api_endpoint:
        _fail(
            "jes check: KEPTN_API_ENDPOINT: required, e.g. http://1.2.3.4/api (jes check tests a remote control "
            "plane; in NATS mode, beside Keptn, jes's /ready says whether NATS and the services answer)",
            code=2,
        )
    sys.exit(serving.check(current))


@main.command(name="copy-files", hidden=True)
@click.argument("source", type=click.Path(file_okay=False, exists=True))
@click.argument("target", type=click.Path(file_okay=False))
def copy_files(source: str, target: str) -> None:
    """(init container) Copy the task's files from the projected ConfigMaps into /keptn."""
    from jes.commands import copy_files as filecopy

    try:
        count = filecopy.copy_tree(source, target)
    except OSError as exc:
        _fail(f"jes copy-files: {exc}")
    click.echo(f"copied {count} file(s) to {target}")


@main.command()
@click.option("--regions", is_flag=True, help="two executors, LOCATION=APAC and LOCATION=EU, with actions[].locations")
@click.option("--nats", is_flag=True, help="in-cluster style: a nats-server, two replicas in one queue group")
@click.option("--keep-running", is_flag=True, help="keep the control plane and jes running to send events yourself")
@click.option("--port", type=int, default=None, help="control plane port (default: 8090 with --keep-running, else any)")
def demo(regions: bool, nats: bool, keep_running: bool, port: int | None) -> None:
    """The hello-world end to end: local control plane + jes + local runner, APAC and EU events."""
    from jes.devtools import demo as demo_mode

    try:
        code = demo_mode.run(
            regions=regions,
            nats=nats,
            keep_running=keep_running,
            port=port if port is not None else (8090 if keep_running else 0),
        )
    except errors.SettingsError as exc:
        _fail_problems("demo", exc)
    except FileNotFoundError as exc:
        _fail(f"jes demo: {exc}")
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


if __name__ == "__main__":  # python -m jes.cli
    main()
