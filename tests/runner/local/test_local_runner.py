"""The local runner runs real processes: outcomes, logs, environment, secrets, files, limits."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from jes import settings
from jes.models import ApiProxyAccess, EnvSecret, EnvValue, Status
from jes.runner.local import shim
from jes.runner.local.runner import LocalRunner, expand
from tests.runner.local.support import make_spec, process_gone, wait_until

PY = sys.executable
PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def env_of(text: str) -> dict[str, str]:
    """The JSON object a PRINT_ENV task printed (the line after the runner's note)."""
    line = [line for line in text.splitlines() if line.startswith("{")][-1]
    value: dict[str, str] = json.loads(line)
    return value


async def test_success_streams_and_keeps_the_output(runner: LocalRunner) -> None:
    chunks: list[tuple[str, bytes]] = []
    running: list[bool] = []
    spec = make_spec("ok-job", ["/bin/sh", "-c", "echo hello; echo oops >&2"], image="alpine:3.20")

    outcome = await runner.run(spec, on_log=lambda c, b: chunks.append((c, b)), on_running=lambda: running.append(True))

    assert outcome.status is Status.SUCCEEDED and outcome.succeeded
    assert outcome.exit_code == 0 and outcome.reason == "exit code 0"
    assert running == [True]
    [log] = outcome.logs
    assert (log.container, log.pod, log.exit_code, log.reason) == ("ok-job", "local", 0, "Completed")
    text = log.text.text()
    assert text.splitlines() == [
        "local runner: image alpine:3.20 is not pulled; running `/bin/sh -c 'echo hello; echo oops >&2'` "
        "on this machine",
        "hello",
        "oops",
    ]
    assert {c for c, _ in chunks} == {"ok-job"}
    assert b"".join(b for _, b in chunks).decode() == text
    assert outcome.finished_at >= outcome.started_at


async def test_failure_reports_exit_code_and_logs(runner: LocalRunner) -> None:
    outcome = await runner.run(make_spec("fail-job", ["/bin/sh", "-c", "echo before failing; exit 3"]))

    assert outcome.status is Status.FAILED
    assert (outcome.exit_code, outcome.reason) == (3, "exit code 3")
    assert outcome.logs[0].reason == "Error" and outcome.logs[0].exit_code == 3
    assert "before failing" in outcome.logs[0].text.text()


async def test_a_signal_is_reported_by_name(runner: LocalRunner) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    outcome = await runner.run(make_spec("signal-job", [PY, "-c", code]))

    assert outcome.status is Status.FAILED
    assert outcome.exit_code == 137
    assert "SIGKILL" in outcome.reason


async def test_no_shell_between_args_and_the_program(runner: LocalRunner) -> None:
    outcome = await runner.run(make_spec("noshell-job", ["echo"], ["a; ls", "`id`", "$HOME", "*"]))

    assert outcome.logs[0].text.text().splitlines()[-1] == "a; ls `id` $HOME *"


async def test_args_alone_are_the_command(runner: LocalRunner) -> None:
    outcome = await runner.run(make_spec("args-job", None, ["echo", "from args"]))

    assert outcome.succeeded
    assert outcome.logs[0].text.text().endswith("from args\n")


@pytest.mark.parametrize(("cmd", "args"), [(None, None), ((), ()), (None, ())])
async def test_no_command_at_all_is_an_error(
    runner: LocalRunner, cmd: tuple[str, ...] | None, args: tuple[str, ...] | None
) -> None:
    outcome = await runner.run(make_spec("nocmd-job", cmd, args))

    assert outcome.status is Status.ERROR
    assert "needs a cmd" in outcome.reason and "entrypoint" in outcome.reason
    assert await runner.list_jobs() == []


async def test_unknown_program_cannot_start(runner: LocalRunner) -> None:
    outcome = await runner.run(make_spec("missing-job", ["no-such-program-jes"], ["x"]))

    assert outcome.status is Status.CANNOT_START
    assert outcome.reason == "StartError: exec: 'no-such-program-jes': executable file not found in $PATH"
    assert outcome.logs[0].text.text().startswith("local runner: image alpine is not pulled")


async def test_a_file_that_is_not_executable_cannot_start(runner: LocalRunner) -> None:
    spec = make_spec("noexec-job", ["/keptn/run.sh"], files={"run.sh": b"#!/bin/sh\necho hi\n"})
    outcome = await runner.run(spec)

    assert outcome.status is Status.CANNOT_START
    assert "permission denied" in outcome.reason and "run.sh" in outcome.reason


# -- environment ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("x$(A)y$(B)z", "x1y2z"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$1"),
        ("$$$$(A)", "$$(A)"),
        ("$(UNKNOWN)", "$(UNKNOWN)"),
        ("$()", "$()"),
        ("$(A", "$(A"),
        ("$(A$(B)", "$(A$(B)"),
        ("$A $HOME", "$A $HOME"),
        ("$$A", "$A"),
        ("cost: 5$", "cost: 5$"),
        ("$", "$"),
        ("($(A))", "(1)"),
    ],
)
def test_expand_follows_the_kubelet(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "2"}) == expected


async def test_env_order_and_references(runner: LocalRunner) -> None:
    env = (
        EnvValue("A", "one"),
        EnvValue("B", "$(A)-two"),
        EnvValue("C", "$(LATER)"),
        EnvValue("LATER", "later"),
        EnvValue("ESC", "$$(A)"),
        EnvValue("A", "override"),
    )
    args = ["-c", PRINT_ENV, "$(A)", "$(B)", "$$(A)", "$(UNKNOWN)", "$(PATH)"]
    outcome = await runner.run(make_spec("env-job", [PY], args, env=env))

    seen = env_of(outcome.logs[0].text.text())
    assert (seen["A"], seen["B"], seen["C"], seen["ESC"]) == ("override", "one-two", "$(LATER)", "$(A)")
    names = [name for name in seen if name in {"A", "B", "C", "LATER", "ESC"}]
    assert names == ["A", "B", "C", "LATER", "ESC"]
    # $(VAR) in args sees the final values, and only the task's variables (not PATH).
    argv_outcome = await runner.run(
        make_spec("argv-job", [PY, "-c", "import sys; print(sys.argv[1:])"], args[2:], env=env)
    )
    assert argv_outcome.logs[0].text.text().splitlines()[-1] == str(
        ["override", "one-two", "$(A)", "$(UNKNOWN)", "$(PATH)"]
    )


async def test_only_a_minimal_environment_reaches_the_task(
    runner: LocalRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEPTN_API_TOKEN", "super-secret-token")
    monkeypatch.setenv("SOME_PARENT_VARIABLE", "parent")
    monkeypatch.setenv("LANG", "C.UTF-8")
    code = (
        "import json, os; print(json.dumps(dict(os.environ)));"
        "print(open(f'/proc/{os.getppid()}/environ', 'rb').read().decode())"
    )
    outcome = await runner.run(make_spec("token-job", [PY, "-c", code], env=(EnvValue("MINE", "1"),)))

    text = outcome.logs[0].text.text()
    assert "super-secret-token" not in text  # neither in the task's nor in the shim's environment
    assert "SOME_PARENT_VARIABLE" not in text
    seen = env_of(text)
    assert set(seen) <= {
        "PATH",
        "HOME",
        "LANG",
        "JES_FILES_DIR",
        "MINE",
        "LC_CTYPE",
    }  # LC_CTYPE: python's C locale coercion
    assert seen["PATH"] == os.environ["PATH"] and seen["LANG"] == "C.UTF-8" and seen["MINE"] == "1"


async def test_secrets_become_variables(runner: LocalRunner, secrets_dir: Path) -> None:
    (secrets_dir / "db").mkdir()
    (secrets_dir / "db" / "DB_USER").write_bytes(b"admin")
    (secrets_dir / "db" / "DB_PASSWORD").write_bytes(b"p4ss word\n")
    (secrets_dir / "db" / "..data").mkdir()  # the layout of a mounted Kubernetes secret is tolerated
    env = (EnvValue("URL", "postgres://$(DB_USER)@db"), EnvSecret("db"), EnvValue("DB_USER", "root"))
    outcome = await runner.run(make_spec("secret-job", [PY, "-c", PRINT_ENV], env=env))

    seen = env_of(outcome.logs[0].text.text())
    # As the kubelet does: secrets (envFrom) first, then the literal entries, which win.
    assert seen["DB_PASSWORD"] == "p4ss word\n"
    assert seen["URL"] == "postgres://admin@db"
    assert seen["DB_USER"] == "root"


async def test_api_proxy_access_reaches_the_task_and_wins(
    runner: LocalRunner, secrets_dir: Path, state_dir: Path
) -> None:
    """A task with proxy access sees the URL and its token; neither a secret key nor a literal entry
    of the same name replaces them, and the token is written nowhere under the state directory."""
    (secrets_dir / "sneaky").mkdir()
    (secrets_dir / "sneaky" / "KEPTN_API_PROXY_TOKEN").write_bytes(b"from-a-secret")
    env = (EnvSecret("sneaky"), EnvValue("KEPTN_API_PROXY_URL", "http://elsewhere"))
    spec = replace(
        make_spec("proxy-job", [PY, "-c", "import sys; " + PRINT_ENV + "; print(sys.argv[1])"],
                  ["$(KEPTN_API_PROXY_URL)"], env=env),
        api_proxy=ApiProxyAccess("http://jes-api-proxy.keptn.svc:8082", "task-token-7f3a"),
    )  # fmt: skip

    outcome = await runner.run(spec)

    assert outcome.status is Status.SUCCEEDED, outcome.reason
    text = outcome.logs[0].text.text()
    seen = env_of(text)
    assert seen["KEPTN_API_PROXY_URL"] == "http://jes-api-proxy.keptn.svc:8082"
    assert seen["KEPTN_API_PROXY_TOKEN"] == "task-token-7f3a"
    assert text.splitlines()[-1] == "http://jes-api-proxy.keptn.svc:8082"  # $(VAR) in args, as the kubelet does
    assert "task-token-7f3a" not in repr(spec)
    # the task printed its environment into its own output; nothing else under the state directory has it
    stored = [p.read_bytes() for p in state_dir.rglob("*") if p.is_file() and p.name != shim.OUTPUT]
    assert not any(b"task-token-7f3a" in content for content in stored)


async def test_without_api_proxy_access_there_are_no_proxy_variables(runner: LocalRunner) -> None:
    outcome = await runner.run(make_spec("noproxy-job", [PY, "-c", PRINT_ENV]))
    seen = env_of(outcome.logs[0].text.text())
    assert "KEPTN_API_PROXY_URL" not in seen and "KEPTN_API_PROXY_TOKEN" not in seen


async def test_a_missing_secret_cannot_start(runner: LocalRunner, secrets_dir: Path) -> None:
    outcome = await runner.run(make_spec("nosecret-job", ["echo"], env=(EnvSecret("absent"),)))

    assert outcome.status is Status.CANNOT_START
    assert outcome.reason == (
        f'CreateContainerConfigError: secret "absent" not found (looked in {secrets_dir / "absent"})'
    )
    assert await runner.list_jobs() == []


async def test_secrets_without_a_secrets_dir_say_how_to_configure_it(state_dir: Path) -> None:
    local = LocalRunner(state_dir=state_dir)
    outcome = await local.run(make_spec("nodir-job", ["echo"], env=(EnvSecret("db"),)))

    assert outcome.status is Status.CANNOT_START
    assert 'secret "db" not found' in outcome.reason and "JES_LOCAL_SECRETS_DIR" in outcome.reason


def test_from_settings(tmp_path: Path) -> None:
    config = settings.load({"JES_STATE_DIR": str(tmp_path / "s"), "JES_LOCAL_SECRETS_DIR": str(tmp_path / "x")})
    local = LocalRunner.from_settings(config)
    assert (local.state_dir, local.secrets_dir) == (tmp_path / "s", tmp_path / "x")


# -- files and working directories -------------------------------------------------------------


async def test_files_are_materialised_and_keptn_paths_mapped(runner: LocalRunner) -> None:
    files = {
        "locust/basic.py": b"import json, os, sys; print(json.dumps([os.environ['JES_FILES_DIR'], os.getcwd(), sys.argv]))",
        "helm/values/deep/v.yaml": b"replicas: 2\n",
        "/top.txt": b"top",
    }
    args = ["/keptn/locust/basic.py", "-f", "/keptn/helm/values/deep/v.yaml", "/keptnx", "x=/keptn/a"]
    outcome = await runner.run(make_spec("files-job", [PY], args, working_dir="/keptn/locust", files=files))

    assert outcome.succeeded, outcome.logs[0].text.text()
    files_dir, cwd, argv = json.loads(outcome.logs[0].text.text().splitlines()[-1])
    assert cwd == f"{files_dir}/locust"
    # Only a leading /keptn is mapped: /keptnx and x=/keptn/a stay as they are.
    assert argv == [
        f"{files_dir}/locust/basic.py",
        "-f",
        f"{files_dir}/helm/values/deep/v.yaml",
        "/keptnx",
        "x=/keptn/a",
    ]
    assert Path(files_dir, "helm/values/deep/v.yaml").read_bytes() == b"replicas: 2\n"
    assert Path(files_dir, "top.txt").read_bytes() == b"top"


async def test_files_dir_is_the_default_working_dir_and_exposed(runner: LocalRunner) -> None:
    spec = make_spec(
        "cwd-job", ["/bin/sh", "-c", 'pwd; echo "$JES_FILES_DIR"; cat a/b/c.txt'], files={"a/b/c.txt": b"nested"}
    )
    outcome = await runner.run(spec)

    cwd, files_dir, content = outcome.logs[0].text.text().splitlines()[-3:]
    assert cwd == files_dir and content == "nested"
    assert files_dir.endswith("/files")


async def test_an_existing_working_dir_is_used(runner: LocalRunner, tmp_path: Path) -> None:
    outcome = await runner.run(make_spec("wd-job", ["pwd"], working_dir=str(tmp_path)))
    assert outcome.logs[0].text.text().splitlines()[-1] == str(tmp_path)

    outcome = await runner.run(make_spec("wd2-job", ["pwd"], working_dir=str(tmp_path / "absent")))
    assert outcome.status is Status.CANNOT_START
    assert "working directory" in outcome.reason and "absent" in outcome.reason


async def test_a_file_outside_keptn_is_refused(runner: LocalRunner) -> None:
    outcome = await runner.run(make_spec("escape-job", ["true"], files={"../evil": b"x"}))
    assert outcome.status is Status.ERROR and "../evil" in outcome.reason


# -- limits and output volume --------------------------------------------------------------------


async def test_timeout_stops_the_whole_process_group(runner: LocalRunner, tmp_path: Path) -> None:
    # The grandchild ignores SIGTERM, so it takes the SIGKILL after the grace period.
    main = b"import os, time; open(os.environ['OUT'] + '/main', 'w').write(str(os.getpid())); time.sleep(30)"
    script = '(trap "" TERM; exec sleep 30) & echo $! > "$OUT/grandchild"; echo waiting; exec python3 main.py'
    env = (EnvValue("OUT", str(tmp_path)),)
    spec = make_spec("slow-job", ["/bin/sh", "-c", script], env=env, files={"main.py": main}, max_poll_duration_s=1)
    outcome = await runner.run(spec)

    assert outcome.status is Status.TIMED_OUT
    assert outcome.reason.startswith("maxPollDuration of 1s exceeded")
    assert outcome.exit_code is None
    assert "waiting" in outcome.logs[0].text.text()
    assert 1.0 <= outcome.duration_s < 10
    for name in ("main", "grandchild"):
        pid = int((tmp_path / name).read_text())
        await wait_until(lambda pid=pid: process_gone(pid), timeout_s=5, what=f"{name} process to end")  # type: ignore[misc]


async def test_job_deadline_is_enforced(state_dir: Path) -> None:
    local = LocalRunner(state_dir=state_dir, task_deadline_s=1)
    await local.start()
    outcome = await local.run(make_spec("deadline-job", ["sleep", "30"], max_poll_duration_s=60))

    assert outcome.status is Status.DEADLINE_EXCEEDED
    assert "activeDeadlineSeconds of 1s" in outcome.reason


async def test_large_output_is_kept_to_head_and_tail(state_dir: Path) -> None:
    local = LocalRunner(state_dir=state_dir, log_head_bytes=1000, log_tail_bytes=1500)
    megabytes = 50
    code = (
        "import sys; w = sys.stdout.buffer.write; w(b'<HEAD>');"
        f"[w(b'x' * 1048576) for _ in range({megabytes})]; w(b'<TAIL>')"
    )
    streamed = 0

    def count(container: str, chunk: bytes) -> None:
        nonlocal streamed
        streamed += len(chunk)

    outcome = await local.run(make_spec("big-job", [PY, "-c", code]), on_log=count)

    text = outcome.logs[0].text
    note = text.head.index(b" on this machine\n") + len(b" on this machine\n")  # the runner's first line
    total = note + 6 + megabytes * 1048576 + 6
    assert outcome.succeeded
    assert (len(text.head), len(text.tail)) == (1000, 1500)
    assert text.omitted_bytes == total - 2500
    assert text.total_bytes == streamed == total
    assert text.head.startswith(b"local runner:") and b"<HEAD>" in text.head
    assert text.tail.endswith(b"x<TAIL>")
    await local.forget("big-job")
    assert await local.list_jobs() == []


# -- state ---------------------------------------------------------------------------------------


async def test_forget_and_list_jobs(runner: LocalRunner, state_dir: Path) -> None:
    await runner.run(make_spec("one-job", ["true"]))
    await runner.run(make_spec("two-job", ["false"]))
    assert await runner.list_jobs() == ["one-job", "two-job"]

    await runner.forget("one-job")
    await runner.forget("one-job")  # forgetting twice is harmless
    assert await runner.list_jobs() == ["two-job"]
    assert not any("one-job" in p.name for p in state_dir.rglob("*"))


async def test_forget_stops_a_running_task(runner: LocalRunner, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(30)"
    waiting = asyncio.create_task(runner.run(make_spec("forget-job", [PY, "-c", code])))
    await wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", what="the task to start")

    await runner.forget("forget-job")

    outcome = await waiting
    assert outcome.status is Status.LOST
    pid = int(pid_file.read_text())
    await wait_until(lambda: process_gone(pid), what="the task to end")
    assert await runner.list_jobs() == []
