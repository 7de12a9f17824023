"""The fake kubelet (and scheduler): plays one pod from scheduling to its end, following scripts."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from fakes.fake_kube import _store
from fakes.fake_kube._behaviour import Behaviour
from jes.runner import outputrelay

if TYPE_CHECKING:
    from fakes.fake_kube._cluster import Cluster

Obj = _store.Obj

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
_IMAGE = re.compile(
    rf"^{_DOMAIN}{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@[A-Za-z][A-Za-z0-9]*:[0-9a-fA-F]{{32,}})?$"
)


def valid_image(image: str) -> bool:
    return bool(_IMAGE.match(image))


def waiting(reason: str, message: str = "") -> Obj:
    state: Obj = {"reason": reason}
    if message:
        state["message"] = message
    return {"waiting": state}


def container_id() -> str:
    return "containerd://" + _store.token_hex(32)


def set_condition(status: Obj, ctype: str, value: str, now: str, reason: str = "", message: str = "") -> None:
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    condition: Obj = {"type": ctype, "status": value, "lastProbeTime": None, "lastTransitionTime": now}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    conditions.append(condition)
    status["conditions"] = conditions


class Kubelet:
    """Plays one pod from scheduling to its end, following the containers' scripts."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        pod: str,
        job_name: str,
        job_uid: str,
        scripts: dict[str, tuple[Behaviour, bool]],
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.pod = pod
        self.job_name = job_name
        self.job_uid = job_uid
        self.scripts = scripts

    def _now(self) -> str:
        return self.cluster.timestamp()

    def _update(self, change: Callable[[Obj], None]) -> Obj | None:
        return self.cluster.mutate_status("pods", self.namespace, self.pod, change)

    def _event(self, etype: str, reason: str, message: str, component: str = "kubelet") -> None:
        pod = self.cluster.store.get("pods", self.namespace, self.pod)
        if pod is not None:
            self.cluster.event(pod, etype, reason, message, component)

    def _spec(self) -> Obj:
        pod = self.cluster.store.get("pods", self.namespace, self.pod)
        return pod["spec"] if pod is not None else {}

    def _set_state(self, name: str, init: bool, state: Obj, *, ready: bool = False) -> None:
        key = "initContainerStatuses" if init else "containerStatuses"

        def change(pod: Obj) -> None:
            for status in pod["status"].get(key) or []:
                if status["name"] == name:
                    status["state"] = state
                    status["ready"] = ready
                    status["started"] = "running" in state
                    if "running" in state or "terminated" in state:
                        status["imageID"] = status["image"] + "@sha256:" + "0" * 64
                        status.setdefault("containerID", container_id())

        self._update(change)

    async def run(self) -> None:
        spec = self._spec()
        inits = spec.get("initContainers") or []
        mains = spec.get("containers") or []
        main_script = self.scripts[mains[0]["name"]][0] if mains else Behaviour()
        if main_script.unschedulable:
            self._unschedulable()
            return
        await self._wait_for_claims(spec)
        self._schedule(inits, mains)
        await self.cluster.timers.sleep(main_script.pending_s)
        if main_script.never_start or not self._volumes_ready(spec):
            return
        for container in inits:
            if is_sidecar(container):
                if not await self._start_sidecar(container):
                    return
                continue
            if is_relay(container):  # a relay that is no sidecar (restartPolicy dropped): it waits for
                await self._start_sidecar(container)  # SIGTERM, so the pod never gets past it
                return
            if not await self._run_init(container):
                return
        await self._run_mains(mains)

    async def _start_sidecar(self, container: Obj) -> bool:
        """A native sidecar (an init container with ``restartPolicy: Always``, KEP-753): started in
        its place among the init containers, and the next one starts as soon as it runs (it has no
        startup probe) — it does not run to completion first. It keeps running beside the main
        containers; :meth:`_stop_sidecars` ends it."""
        name = container["name"]
        if await self._cannot_start(container, True):
            return False
        self._set_state(name, True, {"running": {"startedAt": self._now()}}, ready=True)
        return True

    def _stop_sidecars(self, mains: list[Obj]) -> None:
        """Once every main container ended, the kubelet sends SIGTERM to the sidecars, in the
        reverse of their order (kubernetes PR #120620, 1.29: "terminate sidecars after main
        containers"); the pod stays ``Running`` until they ended (kubelet ``getPhase``: a running
        restartable init container counts as running, a terminated one not at all — its exit code
        never decides the pod's phase). The ``jes-output`` sidecar runs jes's relay on what the
        main container wrote to its output file; its log is what the relay printed."""
        main_script = self.scripts[mains[0]["name"]][0] if mains else Behaviour()
        sidecars = [c for c in self._spec().get("initContainers") or [] if is_sidecar(c)]
        for container in reversed(sidecars):
            name = container["name"]
            state = self._state(name)
            if "running" not in state:
                continue
            self.scripts[name] = (Behaviour(logs=relay_log(container, main_script)), True)
            started = state["running"].get("startedAt", self._now())
            ended = {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": self._now()}
            self._set_state(name, True, {"terminated": {**ended, "containerID": container_id()}})

    def _state(self, name: str) -> Obj:
        pod = self.cluster.store.get("pods", self.namespace, self.pod) or {}
        for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
            if status["name"] == name:
                return dict(status.get("state") or {})
        return {}

    def _unschedulable(self) -> None:
        message = (
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
            "3 No preemption victims found for incoming pod."
        )
        now = self._now()
        self._update(lambda pod: set_condition(pod["status"], "PodScheduled", "False", now, "Unschedulable", message))
        self._event("Warning", "FailedScheduling", message, "default-scheduler")

    async def _wait_for_claims(self, spec: Obj) -> None:
        """Until every PersistentVolumeClaim the pod's volumes name exists in its namespace.

        As the real scheduler: the VolumeBinding plugin's PreFilter (``podHasPVCs`` in
        ``pkg/scheduler/framework/plugins/volumebinding/volume_binding.go``) looks each claim up and
        answers ``UnschedulableAndUnresolvable`` with the lister's NotFound error, ``persistentvolumeclaim
        "<name>" not found``; the pod gets ``PodScheduled=False``, reason ``Unschedulable``, and a
        ``FailedScheduling`` event "0/N nodes are available: <that error>. preemption: ...". The pod is
        tried again when a claim is added (the plugin registers for PVC events; every ``config_retry_s``
        here) and is scheduled once all exist. Claims that exist are taken as bound."""
        shown = ""
        while claim := self._missing_claim(spec):
            message = (
                f'0/3 nodes are available: persistentvolumeclaim "{claim}" not found. preemption: 0/3 nodes are '
                "available: 3 Preemption is not helpful for scheduling."
            )
            if message != shown:  # the status manager writes only changes; events repeat
                self._unschedulable_because(message)
                shown = message
            self._event("Warning", "FailedScheduling", message, "default-scheduler")
            await self.cluster.timers.sleep(self.cluster.config_retry_s)

    def _unschedulable_because(self, message: str) -> None:
        now = self._now()
        self._update(lambda pod: set_condition(pod["status"], "PodScheduled", "False", now, "Unschedulable", message))

    def _missing_claim(self, spec: Obj) -> str:
        for volume in spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and self.cluster.store.get("persistentvolumeclaims", self.namespace, claim) is None:
                return str(claim)
        return ""

    def _schedule(self, inits: list[Obj], mains: list[Obj]) -> None:
        now = self._now()

        def change(pod: Obj) -> None:
            pod["spec"]["nodeName"] = "fake-node"
            status = pod["status"]
            status.update(hostIP="10.0.0.10", podIP=f"10.244.{_store.random_below(250)}.{_store.random_below(250)}")
            status["startTime"] = now
            set_condition(status, "PodScheduled", "True", now)
            if inits:
                set_condition(status, "Initialized", "False", now, "ContainersNotInitialized")
            else:
                set_condition(status, "Initialized", "True", now)
            set_condition(status, "Ready", "False", now, "ContainersNotReady")
            set_condition(status, "ContainersReady", "False", now, "ContainersNotReady")
            main_wait = "PodInitializing" if inits else "ContainerCreating"
            if inits:
                status["initContainerStatuses"] = [container_status(c, waiting("PodInitializing")) for c in inits]
            status["containerStatuses"] = [container_status(c, waiting(main_wait)) for c in mains]

        self._update(change)

    def _volumes_ready(self, spec: Obj) -> bool:
        for volume in spec.get("volumes") or []:
            sources = [volume] + list((volume.get("projected") or {}).get("sources") or [])
            for source in sources:
                problem = self._volume_problem(source)
                if problem:
                    message = f'MountVolume.SetUp failed for volume "{volume["name"]}" : {problem}'
                    self._event("Warning", "FailedMount", message)
                    return False
        return True

    def _volume_problem(self, source: Obj) -> str:
        for kind, key, plural, what in (
            ("configMap", "name", "configmaps", "configmap"),
            ("secret", "secretName", "secrets", "secret"),
        ):
            ref = source.get(kind)
            if ref is None or ref.get("optional"):
                continue
            name = ref.get(key) or ref.get("name", "")
            obj = self.cluster.store.get(plural, self.namespace, name)
            if obj is None:
                return f'{what} "{name}" not found'
            keys = set(obj.get("data") or {}) | set(obj.get("binaryData") or {})
            for item in ref.get("items") or []:
                if item.get("key") not in keys:
                    return f"{what} references non-existent config key: {item.get('key')}"
        return ""

    async def _passing_problem(self, container: Obj, init: bool) -> None:
        """A reason that heals by itself, shown for the script's ``transient_s`` (fake clock)."""
        name, image = container["name"], container.get("image", "")
        script = self.scripts[name][0]
        if not script.transient:
            return
        if script.transient == "secret-cache":  # kubelet watch_based_manager.go, then retried on sync
            message = "failed to sync secret cache: timed out waiting for the condition"
            self._set_state(name, init, waiting("CreateContainerConfigError", message))
            self._event("Warning", "Failed", f"Error: {message}")
            await self.cluster.timers.sleep(script.transient_s)
            return
        status = "429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit"
        if script.transient == "registry-503":
            status = "503 Service Unavailable"
        message = (  # containerd's wording for a registry answering with an error status
            f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": failed to copy: '
            f"httpReadSeeker: failed open: unexpected status code https://registry.example/v2/manifests: {status}"
        )
        clock, healed_at = self.cluster.clock, self.cluster.clock.monotonic() + script.transient_s
        while clock.monotonic() < healed_at:
            self._set_state(name, init, waiting("ErrImagePull", message))
            self._event("Warning", "Failed", f'Failed to pull image "{image}": {message}')
            await self.cluster.timers.sleep(min(self.cluster.image_backoff_s, healed_at - clock.monotonic()))
            self._set_state(name, init, waiting("ImagePullBackOff", f'Back-off pulling image "{image}"'))
            await self.cluster.timers.sleep(min(self.cluster.image_backoff_s, max(0.0, healed_at - clock.monotonic())))

    async def _cannot_start(self, container: Obj, init: bool) -> bool:
        """Apply image and configuration problems; True when the container is stuck for good (an
        image problem). A missing Secret or ConfigMap is waited for (:meth:`_wait_for_config`)."""
        await self._passing_problem(container, init)
        name, image = container["name"], container.get("image", "")
        script = self.scripts[name][0]
        if script.image_pull == "InvalidImageName" or not valid_image(image):
            message = (
                f'Failed to apply default image tag "{image}": '
                f'couldn\'t parse image reference "{image}": invalid reference format'
            )
            self._set_state(name, init, waiting("InvalidImageName", message))
            self._event("Warning", "InspectFailed", message)
            self._event("Warning", "Failed", "Error: InvalidImageName")
            return True
        if script.image_pull:
            message = script.image_pull_message or (
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
                f'failed to resolve reference "{image}": {image}: not found'
            )
            self._set_state(name, init, waiting("ErrImagePull", message))
            self._event("Warning", "Failed", f'Failed to pull image "{image}": {message}')
            self._event("Warning", "Failed", "Error: ErrImagePull")
            await self.cluster.timers.sleep(self.cluster.image_backoff_s)
            self._set_state(name, init, waiting("ImagePullBackOff", f'Back-off pulling image "{image}"'))
            self._event("Normal", "BackOff", f'Back-off pulling image "{image}"')
            self._event("Warning", "Failed", "Error: ImagePullBackOff")
            return True
        await self._wait_for_config(container, init)
        return False

    async def _wait_for_config(self, container: Obj, init: bool) -> None:
        """Until every Secret/ConfigMap (and key) the container's environment names exists.

        As a real kubelet: ``startContainer`` (``kuberuntime_container.go``) cannot build the
        container's config — ``makeEnvironmentVariables`` (``kubelet_pods.go``) fails with the secret
        manager's NotFound error, ``secret "<name>" not found`` (group resource ``secret``,
        ``watch_based_manager.go``), or ``couldn't find key <k> in Secret <ns>/<name>`` — so the
        container stays waiting with reason ``CreateContainerConfigError`` (``ErrCreateContainerConfig``)
        and that message, a ``Failed`` event ``Error: <message>`` is recorded, and the pod stays
        ``Pending``. The pod worker retries a failed sync after its back-off (``pod_workers.go``:
        ``backOffPeriod``, 10 s, jittered; ``config_retry_s`` here); once the object exists the
        container starts. The pod never fails for it: it waits until it is deleted."""
        name = container["name"]
        shown = ""
        while problem := self._config_problem(container):
            if problem != shown:  # the status manager writes only changes; events repeat (count)
                self._set_state(name, init, waiting("CreateContainerConfigError", problem))
                shown = problem
            self._event("Warning", "Failed", f"Error: {problem}")
            await self.cluster.timers.sleep(self.cluster.config_retry_s)

    def _config_problem(self, container: Obj) -> str:
        store, ns = self.cluster.store, self.namespace
        for source in container.get("envFrom") or []:
            for kind, plural, what in (("secretRef", "secrets", "secret"), ("configMapRef", "configmaps", "configmap")):
                ref = source.get(kind)
                if ref and not ref.get("optional") and store.get(plural, ns, ref.get("name", "")) is None:
                    return f'{what} "{ref.get("name", "")}" not found'
        for env in container.get("env") or []:
            value_from = env.get("valueFrom") or {}
            for kind, plural, what, title in (
                ("secretKeyRef", "secrets", "secret", "Secret"),
                ("configMapKeyRef", "configmaps", "configmap", "ConfigMap"),
            ):
                ref = value_from.get(kind)
                if not ref or ref.get("optional"):
                    continue
                obj = store.get(plural, ns, ref.get("name", ""))
                if obj is None:
                    return f'{what} "{ref.get("name", "")}" not found'
                keys = set(obj.get("data") or {}) | set(obj.get("binaryData") or {})
                if ref.get("key") not in keys:
                    return f"couldn't find key {ref.get('key')} in {title} {ns}/{ref.get('name')}"
        return ""

    def _terminated(self, script: Behaviour, started: str, init: bool) -> Obj:
        reason = script.termination_reason
        state: Obj = {
            "exitCode": script.final_exit_code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": self._now(),
            "containerID": container_id(),
        }
        if script.message:
            state["message"] = script.message
        return {"terminated": state}

    async def _run_init(self, container: Obj) -> bool:
        name = container["name"]
        if await self._cannot_start(container, True):
            return False
        script = self.scripts[name][0]
        started = self._now()
        self._set_state(name, True, {"running": {"startedAt": started}})
        await self.cluster.timers.sleep(script.duration_s)
        self._set_state(name, True, self._terminated(script, started, True), ready=script.exit_code == 0)
        if script.final_exit_code == 0 and not script.oom_killed:
            return True
        self._end(False, init_failed=True)
        return False

    async def _run_mains(self, mains: list[Obj]) -> None:
        for container in mains:
            if await self._cannot_start(container, False):
                return
        started = self._now()
        now = started

        def running(pod: Obj) -> None:
            status = pod["status"]
            status["phase"] = "Running"
            set_condition(status, "Initialized", "True", now)
            set_condition(status, "Ready", "True", now)
            set_condition(status, "ContainersReady", "True", now)
            for cstatus in status.get("containerStatuses") or []:
                cstatus.update(
                    state={"running": {"startedAt": started}},
                    ready=True,
                    started=True,
                    imageID=cstatus["image"] + "@sha256:" + "0" * 64,
                    containerID=container_id(),
                )

        self._update(running)

        def ready(j: Obj) -> None:
            j.setdefault("status", {})["ready"] = 1

        self.cluster.mutate("jobs", self.namespace, self.job_name, ready)
        scripts = [self.scripts[c["name"]][0] for c in mains]
        await self.cluster.timers.sleep(max((s.duration_s for s in scripts), default=0.0))
        ok = True
        for container, script in zip(mains, scripts, strict=True):
            self._set_state(container["name"], False, self._terminated(script, started, False))
            ok = ok and script.final_exit_code == 0 and not script.oom_killed
        self._stop_sidecars(mains)
        self._end(ok)

    def _end(self, succeeded: bool, init_failed: bool = False) -> None:
        now = self._now()

        def change(pod: Obj) -> None:
            status = pod["status"]
            status["phase"] = "Succeeded" if succeeded else "Failed"
            set_condition(status, "Ready", "False", now, "PodCompleted" if succeeded else "PodFailed")
            set_condition(status, "ContainersReady", "False", now, "PodCompleted" if succeeded else "PodFailed")
            if init_failed:
                set_condition(status, "Initialized", "False", now, "PodFailed")

        ended = self._update(change)
        self.cluster.pod_finished(self.namespace, self.job_name, self.job_uid, succeeded, ended)


def is_sidecar(container: Obj) -> bool:
    """A native sidecar: an init container with ``restartPolicy: Always`` (SidecarContainers)."""
    return container.get("restartPolicy") == "Always"


def is_relay(container: Obj) -> bool:
    """jes's output relay (whatever its restartPolicy): it waits for SIGTERM, then prints and exits 0."""
    return "jes.runner.outputrelay" in [str(part) for part in container.get("command") or []]


def relay_log(container: Obj, main: Behaviour) -> bytes:
    """What jes's output relay prints (the jes image's program, run here on the file the main
    container wrote): its PATH and MAX_BYTES are the last two words of the container's command."""
    command = [str(part) for part in container.get("command") or []]
    if "jes.runner.outputrelay" not in command or len(command) < 2:
        return b""
    path, max_bytes = command[-2], int(command[-1])
    if main.output is None:
        return outputrelay.report(b"")  # no file: the relay says "none"
    with tempfile.TemporaryDirectory(prefix="fake-kubelet-") as folder:
        written = Path(folder) / PurePosixPath(path).name
        written.write_bytes(main.output.encode() if isinstance(main.output, str) else main.output)
        return outputrelay.encode(str(written), max_bytes)


def container_status(container: Obj, state: Obj) -> Obj:
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": state,
        "lastState": {},
    }
