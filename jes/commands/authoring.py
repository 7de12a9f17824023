"""What the authoring commands (validate, match, explain, render) compute, apart from the CLI.

Each function takes parsed inputs and returns text or plain data, so the CLI stays a thin shell
and tests can call these directly.
"""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from jes import errors, settings
from jes.matcher import checks, schema
from jes.matcher import config as cfg
from jes.matcher import matching as matcher
from jes.models import Concurrency, EnvSecret, EnvValue, Plan, RenderedTask, TaskVolume
from jes.runner.kubernetes import manifests


def read_event(path: str, notes: list[str] | None = None) -> dict[str, Any]:
    """An event file: a Keptn CloudEvent as JSON, or the datastore's answer (``{"events": [...]}``) or a
    list of events, from which the triggered event is picked. An event without an ``id`` gets one
    derived from its content. What was picked or added is appended to ``notes`` (for stderr).
    Raises :class:`errors.EventError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.EventError(f"{path}: cannot read the event file: {exc.strerror}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.EventError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    event = _one_event(path, document, notes if notes is not None else [])
    if not _is_text(event.get("id")):
        event = {**event, "id": _content_id(event)}
        if notes is not None:
            notes.append(f"{path}: the event has no id; using {event['id']} (derived from its content)")
    try:
        matcher.event_info(event)
    except errors.EventError as exc:
        raise errors.EventError(f"{path}: {exc}") from exc
    return event


def _one_event(path: str, document: Any, notes: list[str]) -> dict[str, Any]:
    """The event of a file holding one event, ``{"events": [...]}`` (the datastore) or a list."""
    if isinstance(document, dict) and "events" in document and "type" not in document:
        document = document["events"]
    if isinstance(document, dict):
        return document
    if not isinstance(document, list):
        raise errors.EventError(f"{path}: an event must be a JSON object, got {type(document).__name__}")
    events = [e for e in document if isinstance(e, dict)]
    triggered = [e for e in events if str(e.get("type", "")).endswith(".triggered")]
    # a task's event (sh.keptn.event.<task>.triggered) over its sequence's (….<stage>.<sequence>.triggered)
    tasks = [e for e in triggered if str(e.get("type")).count(".") == 4]
    triggered = tasks or triggered
    if not triggered:
        raise errors.EventError(
            f"{path}: none of its {len(events)} event(s) is a .triggered event (jes handles "
            "sh.keptn.event.<task>.triggered); fetch one with ?type=sh.keptn.event.<task>.triggered"
        )
    chosen = triggered[0]
    others = f" (the first of {len(triggered)} triggered events; the datastore lists the newest first)"
    notes.append(
        f"{path}: using the triggered event {chosen.get('id', '(no id)')} of type {chosen.get('type')}"
        + (others if len(triggered) > 1 else "")
    )
    return chosen


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _content_id(event: Mapping[str, Any]) -> str:
    """A stable id for an event without one: the same file gives the same Job names."""
    text = json.dumps(event, sort_keys=True, ensure_ascii=False)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "jes-event:" + text))


def read_config(
    path: str, *, policy: checks.Policy | None = None, max_bytes: int = cfg.DEFAULT_MAX_CONFIG_BYTES
) -> cfg.LoadedConfig:
    """A config file. Raises :class:`errors.ConfigError` (also when the file cannot be read)."""
    try:
        with Path(path).open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise errors.ConfigError([errors.Problem(path, 1, 1, "", f"cannot read the file: {exc.strerror}")]) from exc
    return cfg.load(data, file=path, policy=policy, max_bytes=max_bytes)


def policy_of(settings_: settings.Settings, *, check_images: bool) -> checks.Policy:
    return checks.Policy(
        allowed_images=settings_.allowed_image_list if check_images else None,
        allow_privileged=settings_.allow_privileged_jobs,
        protected_secrets=settings_.protected_secrets,
        protected_service_accounts=settings_.protected_service_accounts,
        allowed_volume_claims=settings_.allowed_volume_claims,
    )


# ---------------------------------------------------------------------------------------------
# match --json


def match_document(result: Plan) -> dict[str, Any]:
    """The JSON of ``jes match --json`` (a contract: README.md, "match --json")."""
    return {
        "matched": result.matched,
        "actions": [
            {
                "index": action.index,
                "name": action.name,
                "silent": action.silent,
                "tasks": [_task_document(task) for task in action.tasks],
                **({"error": action.error} if action.error else {}),
                **({"concurrency": _concurrency_document(action.concurrency)} if action.concurrency else {}),
            }
            for action in result.actions
        ],
    }


def _concurrency_document(concurrency: Concurrency) -> dict[str, Any]:
    return {"limit": concurrency.limit, "key": concurrency.key, "value": concurrency.value}


def concurrency_text(concurrency: Concurrency) -> str:
    """``at most 1 event at a time for $.data.stage = "dev"``."""
    plural = "s" if concurrency.limit != 1 else ""
    scope = f" for {concurrency.key} = {json.dumps(concurrency.value, ensure_ascii=False)}" if concurrency.key else ""
    return f"at most {concurrency.limit} event{plural} at a time{scope}; others wait in arrival order"


def _task_document(task: RenderedTask) -> dict[str, Any]:
    env: list[dict[str, str]] = []
    for entry in task.env:
        if isinstance(entry, EnvValue):
            env.append({"name": entry.name, "value": entry.value})
        elif isinstance(entry, EnvSecret):
            env.append({"name": entry.secret, "secretRef": entry.secret})
    return {
        "index": task.task_index,
        "name": task.name,
        "image": task.image,
        "cmd": list(task.cmd or ()),
        "args": list(task.args or ()),
        "workingDir": task.working_dir,
        "env": env,
        "onError": task.on_error,
        "volumes": [_volume_document(volume) for volume in task.volumes],
        "retries": task.retries,
        "retryOnExitCodes": list(task.retry_on_exit_codes),
    }


def blocked(result: Plan) -> bool:
    """An action matched but cannot run for this event (an allowlist, a JSONPath that finds nothing)."""
    return any(action.error for action in result.actions)


def local_commands(result: Plan) -> list[str]:
    """One line per task the local runner would start: "task 1/2 'Say hello' (image alpine): echo hi"."""
    lines = []
    for action in result.actions:
        if action.error:
            continue
        for task in action.tasks:
            argv = shlex.join([*(task.cmd or ()), *(task.args or ())]) or "(no cmd)"
            where = f" in {task.working_dir}" if task.working_dir else ""
            label = f"task {task.task_index + 1}/{len(action.tasks)} {task.name!r}"
            lines.append(f"{label} (image {task.image}){where}: {argv}")
    return lines


def _volume_document(volume: TaskVolume) -> dict[str, Any]:
    """A volume as job/config.yaml writes it."""
    source: dict[str, Any]
    if volume.claim_name:
        source = {"persistentVolumeClaim": {"claimName": volume.claim_name, "readOnly": volume.read_only}}
    else:
        source = {"emptyDir": {"sizeLimit": volume.size_limit} if volume.size_limit else {}}
    return {"name": volume.name, "mountPath": volume.mount_path, **source}


def volume_text(volume: TaskVolume) -> str:
    """One line of ``jes match``: "cache at /cache: emptyDir (sizeLimit 1Gi)"."""
    if volume.claim_name:
        what = f"persistentVolumeClaim {volume.claim_name!r}" + (" (read-only)" if volume.read_only else "")
    else:
        what = "emptyDir" + (f" (sizeLimit {volume.size_limit})" if volume.size_limit else "")
    return f"volume {volume.name!r} at {volume.mount_path}: {what}"


def match_text(result: Plan) -> str:
    if not result.matched:
        return "no action matches this event: nothing runs and no events are sent\n"
    lines = []
    for action in result.actions:
        mode = "silent" if action.silent else "reports"
        lines.append(f"action {action.index} {action.name!r} ({mode})")
        if action.error:
            lines.append(f"  error: {action.error.strip()}")
        if action.concurrency:
            lines.append(f"  concurrency: {concurrency_text(action.concurrency)}")
        for task in action.tasks:
            argv = " ".join(json.dumps(part) for part in (*(task.cmd or ()), *(task.args or ())))
            warning = " (onError: warning)" if task.on_error == "warning" else ""
            warning += _retries_text(task)
            lines.append(f"  task {task.task_index} {task.name!r}{warning}: {task.image} {argv}".rstrip())
            for entry in task.env:
                if isinstance(entry, EnvValue):
                    shown = json.dumps(entry.value) if "\n" in entry.value else entry.value
                    lines.append(f"    {entry.name}={shown}")
                else:
                    lines.append(f"    (every key of Secret {entry.secret!r})")
            lines.extend(f"    {volume_text(volume)}" for volume in task.volumes)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# explain


def explain_text(loaded: cfg.LoadedConfig, event: Mapping[str, Any], *, location: str | None) -> str:
    verdicts = matcher.judge(loaded.config, event, location=location)
    where = f"location {location!r}" if location else "no LOCATION"
    lines = [f"event type {event.get('type')!r}, executor with {where}", ""]
    if not verdicts:
        lines.append("the config has no actions")
    for verdict in verdicts:
        lines.extend(_explain_action(verdict))
        if verdict.runs:
            lines.extend(_explain_concurrency((loaded.config.actions or [])[verdict.index], event))
    runs = [v for v in verdicts if v.runs]
    lines.append("")
    if not runs:
        lines.append("result: nothing runs; no events are sent for this event")
    else:
        names = ", ".join(f"{v.index} {v.name!r}" for v in runs)
        lines.append(f"result: runs action(s) {names}")
    return "\n".join(lines) + "\n"


def _explain_action(verdict: matcher.ActionVerdict) -> list[str]:
    mark = "RUNS" if verdict.runs else "skip"
    silent = " (silent)" if verdict.silent else ""
    lines = [f"[{mark}] action {verdict.index} {verdict.name!r}{silent}: {verdict.note}"]
    for trigger in verdict.triggers:
        verdict_word = "match" if trigger.matched else "no match"
        lines.append(f"    events[{trigger.index}] {verdict_word}: {trigger.explain()}")
    if not verdict.triggers:
        lines.append("    (no events listed)")
    lines.append(f"    location: {verdict.location_note}")
    return lines


def _explain_concurrency(action: schema.Action, event: Mapping[str, Any]) -> list[str]:
    if action.concurrency is None:
        return []
    try:
        concurrency = matcher.render_concurrency(action, event, matcher.event_info(event))
    except errors.RenderError as exc:
        return [f"    concurrency: cannot run: {exc}"]
    return [f"    concurrency: {concurrency_text(concurrency)}"] if concurrency else []


# ---------------------------------------------------------------------------------------------
# render


def render_documents(result: Plan, job_settings: manifests.JobSettings) -> str:
    """Multi-document YAML of the Jobs jes would create (files are added at run time)."""
    parts = []
    for action in result.actions:
        if action.error:
            parts.append(f"# action {action.index} {action.name!r} would fail: {action.error.strip()}\n")
            continue
        for task in action.tasks:
            job = manifests.build_job(task, result.event, config_hash=result.config_hash, settings=job_settings)
            note = (
                _files_note(task.files) + _on_error_note(task) + _claims_note(task) + _outputs_note(job_settings)
                + _retries_note(task)
            )
            if action.concurrency and task is action.tasks[0]:
                note = f"# action {action.name!r}: {concurrency_text(action.concurrency)}\n" + note
            parts.append(note + yaml.safe_dump(job, sort_keys=False, allow_unicode=True))
    if not parts:
        return "# no action matches this event: no Job would be created\n"
    return "---\n".join(parts)


def _claims_note(task: RenderedTask) -> str:
    return "".join(
        f"# task {task.name!r} mounts persistentVolumeClaim {v.claim_name!r}: it must exist in namespace "
        f"{task.namespace!r}, or the pod stays Pending (Unschedulable) until JES_PENDING_GRACE_S ends the task\n"
        for v in task.volumes
        if v.claim_name
    )


def _on_error_note(task: RenderedTask) -> str:
    if task.on_error != "warning":
        return ""
    return f"# task {task.name!r} has onError: warning: if it fails, the next tasks still run\n"


def _outputs_note(job_settings: manifests.JobSettings) -> str:
    if not job_settings.task_outputs:
        return ""
    return (
        "# the task may write a JSON object to $KEPTN_OUTPUT_FILE: the jes-output sidecar relays it\n"
        "# when the task ended, and its keys are merged into the .finished data (JES_TASK_OUTPUTS)\n"
    )


def _retries_text(task: RenderedTask) -> str:
    """" (retries: 2 on exit codes 2, 3)" for ``jes match``; nothing for a task without retries."""
    if task.retries <= 0:
        return ""
    codes = ", ".join(str(code) for code in task.retry_on_exit_codes)
    return f" (retries: {task.retries} on exit codes {codes})" if codes else f" (retries: {task.retries})"


def _retries_note(task: RenderedTask) -> str:
    if task.retries <= 0:
        return ""
    which = f"exit codes {list(task.retry_on_exit_codes)}" if task.retry_on_exit_codes else "any failure"
    return (
        f"# task {task.name!r} runs up to {task.retries + 1} times after {which} "
        "(backoffLimit; podFailurePolicy: disruptions do not count)\n"
    )


def _files_note(files: Sequence[str]) -> str:
    if not files:
        return ""
    return (
        f"# files {list(files)} are fetched when the task runs: jes then adds ConfigMaps,\n"
        "# a projected volume and an init container that copies them into /keptn\n"
    )
