"""The original's way, re-enacted for side-by-side figures (keptn-contrib/job-executor-service 0.3.0).

Upstream waited for a Job by polling: GET the Job, look at its
conditions, and if it is neither ``Complete`` nor ``Failed`` sleep **5 s** and ask again; then it
listed the Job's pods and read every terminated container's log (§3.5) and sent ``.finished``.
Its go-sdk found work by polling the control plane **every 1 s** per subscription and sent
``.started`` before the handler ran, after the filter had read ``job/config.yaml`` (§3.1, §4.1).

:class:`UpstreamBaseline` does exactly that against the same fakes, with the same Job manifest
jes would create (built by jes's own pure ``matcher``/``manifests`` functions), so the two are
measured with the same yardstick: the fake Kubernetes API's moment of completion and the control
plane's acceptance time of ``.finished``. It is deliberately simple (one asyncio task per event,
as upstream used one goroutine per event; blocking Kubernetes calls in threads) and is not part
of jes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import kubernetes.client

from jes import settings
from jes.clients.keptn import client as keptn_client
from jes.matcher import config as cfg
from jes.matcher import matching as matcher
from jes.runner.kubernetes import manifests

logger = logging.getLogger(__name__)

#: Upstream's Job status polling interval (pkg/k8sutils/job.go: time.Sleep(5 * time.Second)).
JOB_POLL_INTERVAL_S = 5.0
#: The go-sdk's control-plane polling interval.
CONTROL_PLANE_POLL_INTERVAL_S = 1.0
SOURCE = "job-executor-service"


def _keptn_time() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class JobBuilder:
    """The Job jes would create for an event's first task, by jes's own pure functions."""

    def __init__(self, *, job_namespace: str, k8s_namespace: str = "default") -> None:
        current = settings.Settings(job_namespace=job_namespace, k8s_namespace=k8s_namespace)
        self.executor = matcher.executor_from_settings(current)
        self.job_settings = manifests.JobSettings.from_settings(current)

    def job(self, event: dict[str, Any], loaded: cfg.LoadedConfig) -> dict[str, Any]:
        plan = matcher.plan(loaded, event, self.executor)
        task = plan.actions[0].tasks[0]
        return manifests.build_job(task, plan.event, config_hash=plan.config_hash, settings=self.job_settings)


class UpstreamBaseline:
    """Polls one event type every second and handles each new event the way upstream 0.3.0 did."""

    def __init__(
        self,
        *,
        endpoint: str,
        token: str,
        event_type: str,
        api_client: kubernetes.client.ApiClient,
        namespace: str,
        before_create: Callable[[str, str], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.event_type = event_type
        self.namespace = namespace
        self.before_create = before_create or (lambda event_id, job_name: None)
        self.http = httpx.AsyncClient(headers={"x-token": token}, timeout=30.0)
        self.batch = kubernetes.client.BatchV1Api(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.jobs = JobBuilder(job_namespace=namespace)
        self.seen: set[str] = set()
        self.handlers: set[asyncio.Task[None]] = set()
        self.job_gets = 0
        self.errors: list[str] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, then wait for the events being handled."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            began = loop.time()
            try:
                await self._poll()
            except httpx.HTTPError as exc:
                self.errors.append(f"poll: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, CONTROL_PLANE_POLL_INTERVAL_S - (loop.time() - began)))
        if self.handlers:
            await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.http.aclose()

    async def _poll(self) -> None:
        url = f"{self.endpoint}/controlPlane/v1/event/triggered/{self.event_type}"
        answer = await self.http.get(url)
        answer.raise_for_status()
        for event in answer.json().get("events", []):
            if event["id"] in self.seen:
                continue
            self.seen.add(event["id"])
            task = asyncio.create_task(self._handle(event), name=f"baseline:{event['id']}")
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)

    async def _handle(self, event: dict[str, Any]) -> None:
        try:
            loaded = await self._config(event)  # the filter (before .started)
            await self._send(event, "started", {})
            loaded = await self._config(event)  # the handler reads it again
            job = self.jobs.job(event, loaded)
            name = job["metadata"]["name"]
            self.before_create(str(event["id"]), name)
            await asyncio.to_thread(self.batch.create_namespaced_job, self.namespace, job)
            failed = await self._wait_for_job(name)
            logs = await self._logs(name)
            result = "fail" if failed else "pass"
            status = "errored" if failed else "succeeded"
            message = failed or f"Job {name} finished successfully!\n\nLogs:\n{logs}"
            await self._send(event, "finished", {"status": status, "result": result, "message": message})
        except Exception as exc:  # recorded: the benchmark reports a baseline that broke
            logger.exception("baseline failed on event %s", event.get("id"))
            self.errors.append(f"{event.get('id')}: {type(exc).__name__}: {exc}")

    async def _config(self, event: dict[str, Any]) -> cfg.LoadedConfig:
        data = event["data"]
        path = (
            f"{self.endpoint}/resource-service/v1/project/{data['project']}/stage/{data['stage']}"
            f"/service/{data['service']}/resource/{keptn_client.encode_resource_uri('job/config.yaml')}"
        )
        params = {"gitCommitID": event["gitcommitid"]} if event.get("gitcommitid") else None
        answer = await self.http.get(path, params=params)
        answer.raise_for_status()
        return cfg.load(base64.b64decode(answer.json()["resourceContent"]))

    async def _wait_for_job(self, name: str) -> str:
        """Upstream's loop (§3.4): GET, inspect every condition, else sleep 5 s. '' = Complete."""
        while True:
            self.job_gets += 1
            job = await asyncio.to_thread(self.batch.read_namespaced_job, name, self.namespace)
            for condition in (job.status and job.status.conditions) or ():
                if condition.type == "Complete":
                    return ""
                if condition.type == "Failed":
                    return f"job {name} failed. Reason: {condition.reason}, Message: {condition.message}"
            await asyncio.sleep(JOB_POLL_INTERVAL_S)

    async def _logs(self, name: str) -> str:
        """§3.5: every terminated container of the Job's pods, its full log."""
        pods = await asyncio.to_thread(self.core.list_namespaced_pod, self.namespace, label_selector=f"job-name={name}")
        parts = []
        for pod in pods.items:
            for status in pod.status.container_statuses or ():
                if status.state is None or status.state.terminated is None:
                    continue
                text = await asyncio.to_thread(
                    self.core.read_namespaced_pod_log, pod.metadata.name, self.namespace, container=status.name
                )
                if text:
                    parts.append(f"Container {status.name} of pod {pod.metadata.name}:\n{text}\n")
        return "\n".join(parts)

    async def _send(self, event: dict[str, Any], kind: str, extra: dict[str, Any]) -> None:
        data = {k: event["data"][k] for k in ("project", "stage", "service")} | extra
        body = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": SOURCE,
            "type": event["type"].rsplit(".", 1)[0] + f".{kind}",
            "time": _keptn_time(),
            "contenttype": "application/json",
            "shkeptncontext": event["shkeptncontext"],
            "triggeredid": event["id"],
            "data": data,
        }
        if event.get("gitcommitid"):
            body["gitcommitid"] = event["gitcommitid"]
        answer = await self.http.post(f"{self.endpoint}/v1/event", json=body)
        answer.raise_for_status()
