"""A build container with a tiny surface (call, copy_into, copy_out) that is always removed.

Host paths are mounted only when the caller says so (see workspace.py); otherwise everything goes
through the Docker API (named volumes, put/get archive), so the same code drives a local engine or a
remote arm64 box given by DOCKER_HOST.
"""
from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import docker.errors

from . import lifecycle
from .errors import ContainerError, no_space
from .settings import REPO_ROOT, load_settings
from .tools import APT_HINTS, hint_for
from .view import say

LABEL = "io.criobuild"  # the artifacts directory the container works for ("criobuild" when none)
STEP_LABEL = "io.criobuild.step"  # the step that made it (compile:crio-1.36:cri-o)
RUN_LABEL = "io.criobuild.run"  # <host>:<pid>-<start> of the run that made it: gone means leftover
CHECKOUT_LABEL = "io.criobuild.checkout"  # the criobuild checkout that ran


ANSWER_SECONDS = 5  # an engine that has not answered a ping by then is not going to
REQUEST_SECONDS = 600  # builds and image pulls are slow requests
REMOVE_SECONDS = 30  # removing a container: a stuck engine must not hold up the end of a run
LIFELINE = ["cat"]  # the build container's main process: it ends when its stdin, our attached socket, closes
_swept = False


def docker_client() -> docker.DockerClient:
    """A client of the engine DOCKER_HOST names, refused at once with Docker's own words if it does not answer.

    The first in a process also removes what runs that are gone left on this engine, and starts the watch
    that fails a step whose engine stops answering (see EngineWatch)."""
    global _swept
    try:
        client = docker.from_env(timeout=ANSWER_SECONDS)
        client.ping()
    except docker.errors.DockerException as e:
        message, hint = daemon_problem(str(e))
        raise ContainerError(message, hint=hint) from None
    client.api.timeout = REQUEST_SECONDS
    EngineWatch.start_once()
    if not _swept:
        _swept = True
        sweep_leftovers(client)
    return client


class EngineStopped(ContainerError):
    """Raised in the step (by a signal from the watch) when the engine stopped answering."""


class EngineWatch:
    """While a step runs, a thread pings the engine every few seconds on a connection of its own. When no ping
    has been answered for CRIOBUILD_ENGINE_TIMEOUT seconds, it interrupts the step (SIGUSR1 to the main
    thread, which raises EngineStopped wherever the step is waiting, a build's output included)."""

    lost = False  # the engine stopped answering in this process: leave its containers, do not wait on it
    _started = False
    INTERVAL = 5

    @classmethod
    def start_once(cls) -> None:
        if cls._started or threading.current_thread() is not threading.main_thread():
            return
        cls._started = True
        timeout = load_settings().engine_timeout
        signal.signal(signal.SIGUSR1, cls.raise_stopped(timeout))
        threading.Thread(target=cls.watch, args=(timeout, threading.main_thread().ident), daemon=True, name="engine-watch").start()

    @classmethod
    def raise_stopped(cls, timeout: float):
        def handler(signum: int, frame: object) -> None:
            raise EngineStopped(
                f"the Docker engine stopped answering: no reply to a ping for {timeout:g} s (CRIOBUILD_ENGINE_TIMEOUT) while {lifecycle.RUNNING_STEP or 'a step'} ran",
                hint="check it (`docker info`, `journalctl -u docker`, or dockerd's log) and restart it; the next run removes the container this one left",
            )
        return handler

    @classmethod
    def watch(cls, timeout: float, main: int) -> None:
        api = docker.from_env(timeout=ANSWER_SECONDS).api
        answered = time.monotonic()
        while True:
            time.sleep(cls.INTERVAL)
            if lifecycle.RUNNING_STEP is None:
                answered = time.monotonic()
                continue
            try:
                api.ping()
                answered, cls.lost = time.monotonic(), False
            except Exception:
                if time.monotonic() - answered > timeout and not cls.lost:
                    cls.lost = True
                    signal.pthread_kill(main, signal.SIGUSR1)


def sweep_leftovers(client: docker.DockerClient) -> None:
    """Remove the containers and snapshot images that runs on this host left when they were killed."""
    for container in client.containers.list(all=True, filters={"label": RUN_LABEL}):
        if lifecycle.run_alive(container.labels.get(RUN_LABEL, "")) is False:
            step = container.labels.get(STEP_LABEL, "")
            with suppress_engine_errors():
                container.remove(force=True, v=True)
            say(f"removed container {container.name}, which a run that is gone left" + (f" ({step})" if step else ""))
    for image in client.images.list(filters={"label": RUN_LABEL}):
        if lifecycle.run_alive(image.labels.get(RUN_LABEL, "")) is False:
            with suppress_engine_errors():
                client.images.remove(image.id, force=True)
            say(f"removed image {image.short_id}, which a run that is gone left")


@contextmanager
def suppress_engine_errors() -> Iterator[None]:
    try:
        yield
    except (docker.errors.NotFound, docker.errors.APIError):
        pass


def labels(owner: str) -> dict[str, str]:
    return {LABEL: owner or "criobuild", STEP_LABEL: lifecycle.RUNNING_STEP or "", RUN_LABEL: lifecycle.run_label(), CHECKOUT_LABEL: str(REPO_ROOT)}


def engine_error(error: Exception) -> ContainerError:
    """What the engine (or the connection to it) said when a request failed in the middle of a step."""
    detail = str(error).strip()
    if isinstance(error, docker.errors.APIError):
        detail = str(error.explanation or error)
    if no_space(error):
        return ContainerError(f"the Docker engine ran out of disk: {detail}", hint="free space where Docker keeps its data (`docker system df`, `docker system prune`)")
    message, hint = daemon_problem(detail)
    return ContainerError(message.replace("cannot talk to the Docker daemon", f"the Docker engine failed {lifecycle.RUNNING_STEP or 'a step'}"), hint=hint)


def daemon_problem(detail: str) -> tuple[str, str]:
    if "Permission denied" in detail or "PermissionError" in detail:
        return (
            f"cannot talk to the Docker daemon because the socket refused this user ({detail})",
            "add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again) or run as root",
        )
    return (
        f"cannot talk to the Docker daemon because it does not answer ({detail})",
        "start it (`sudo systemctl start docker`, or `sudo dockerd &`), or point DOCKER_HOST at a running engine",
    )


class Container:
    """Use as `with Container(client, image, ...) as c: c.call([...])`."""

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        *,
        volumes: dict[str, dict[str, str]] | None = None,
        env: dict[str, str] | None = None,
        workdir: str = "/",
        what: str = "",
        owner: str = "",
        network: str = "none",
        user: str = "",
        read_only: bool = False,
        command: list[str] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.image = image
        self.volumes = volumes or {}
        self.env = env or {}
        self.workdir = workdir
        self.what = what
        self.owner = owner
        self.network = network  # builds run offline; apt needs "bridge", or "host" to reach the host's 127.0.0.1
        self.user = user
        self.read_only = read_only
        self.command = command or LIFELINE
        self.options = options or {}  # more of docker's create arguments (cap_add, tmpfs, mounts …)
        self.container: Any = None
        self.lifeline: Any = None  # our end of the container's stdin: closing it (or dying) ends the container
        self.timings: list[tuple[list[str], float]] = []  # each call's argv and wall time

    def __enter__(self) -> Container:
        try:
            with terminate_as_interrupt():
                self.create()
                self.container.start()
        except BaseException:
            self.remove()  # `with` calls no __exit__ when __enter__ fails
            raise
        return self

    def create(self) -> None:
        """The container, and for the lifeline command its stdin attached to this process: when the process ends,
        however it ends (SIGKILL too), the kernel closes the socket, `cat` reads end of file, the container stops
        and the engine removes it (auto_remove)."""
        lifeline = self.command == LIFELINE  # docker-py asks for StdinOnce only when not "detached"
        self.container = self.client.containers.create(
            self.image, self.command, name=f"criobuild-{uuid.uuid4().hex[:12]}",
            labels=labels(self.owner), volumes=self.volumes, environment=self.env, stdin_open=lifeline, auto_remove=lifeline,
            working_dir=self.workdir, network_mode=self.network, user=self.user, read_only=self.read_only, detach=not lifeline, **self.options,
        )  # fmt: skip
        if lifeline:
            self.lifeline = self.client.api.attach_socket(self.container.id, params={"stdin": 1, "stream": 1})

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the container now; if the engine does not answer, leave it to its lifeline and the next run."""
        if self.lifeline is not None:
            self.lifeline.close()
        if self.container is None:
            return
        if EngineWatch.lost or not engine_answers(self.client):
            say(f"left container {self.container.name} behind: the Docker engine does not answer (the next run removes it)")
            return
        with terminate_as_interrupt(), short_requests(self.client, REMOVE_SECONDS), suppress_engine_errors():
            self.container.remove(force=True, v=True)

    def call(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None, user: str = "") -> None:
        """Run argv in the container (as user, else the container's user), streaming its output; raise ContainerError on failure."""
        self.say(f"+ {' '.join(argv)}")
        started = time.monotonic()
        api = self.client.api
        exec_id = api.exec_create(self.container.id, argv, environment=env, workdir=cwd or self.workdir, user=user)["Id"]
        tail: deque[str] = deque(maxlen=40)
        for chunk in api.exec_start(exec_id, stream=True):
            text = chunk.decode(errors="replace")
            tail.extend(text.splitlines())
            self.say(text, end="")
        code = api.exec_inspect(exec_id)["ExitCode"]
        self.timings.append((argv, round(time.monotonic() - started, 2)))
        if code != 0:
            last = "\n".join(tail)
            where = "its output is above"
            raise ContainerError(
                f"{self.what}: `{' '.join(argv)}` failed because it returned {code} in image {self.image}\n{last}",
                hint=hint_for(last, APT_HINTS, default=where) if argv[0].startswith("apt") else where,
            )

    def run(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
        """argv's exit code, standard output and standard error, whatever its exit status."""
        result = self.container.exec_run(argv, environment=env, workdir=self.workdir, demux=True)
        out, err = ((part or b"").decode(errors="replace") for part in result.output)
        return result.exit_code, out, err

    def stdout(self, argv: list[str]) -> str:
        """argv's standard output, whatever its exit status (`dpkg-query -S a b` exits 1 when one is missing)."""
        out, _ = self.container.exec_run(argv, workdir=self.workdir, demux=True).output
        return (out or b"").decode(errors="replace")

    def output(self, argv: list[str]) -> str:
        result = self.container.exec_run(argv, workdir=self.workdir)
        if result.exit_code != 0:
            raise ContainerError(f"{self.what}: `{' '.join(argv)}` failed because it returned {result.exit_code}: {result.output.decode(errors='replace')}")
        return result.output.decode()

    @contextmanager
    def snapshot(self) -> Iterator[str]:
        """An image of this container's filesystem as it is now (its id), removed afterwards."""
        with terminate_as_interrupt():
            image = self.container.commit(changes=[f"LABEL {key}={value}" for key, value in labels(self.owner).items() if value])
        try:
            yield image.id
        finally:
            with terminate_as_interrupt():
                self.client.images.remove(image.id, force=True)

    def run_read_only(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        """Run argv in a new container of this one's filesystem as it is now, mounted read-only; (exit code, output)."""
        with self.snapshot() as image, Container(self.client, image, env=env, what=self.what, owner=self.owner, read_only=True) as copy:
            result = copy.container.exec_run(argv)
            return result.exit_code, result.output.decode(errors="replace")

    def copy_into(self, source: Path, dest: str) -> None:
        """Copy the contents of a host directory into dest (created if needed), streamed through GNU tar."""
        self.container.exec_run(["mkdir", "-p", dest])
        tar = subprocess.run(["tar", "-C", str(source), "-cf", "-", "."], capture_output=True)
        if tar.returncode != 0:
            raise ContainerError(f"{self.what}: cannot copy {source} into the container because tar said {tar.stderr.decode().strip()}")
        self.container.put_archive(dest, tar.stdout)

    def copy_out(self, source: str, dest: Path) -> None:
        """Copy the contents of a container directory into a host directory, streamed through GNU tar."""
        stream, _ = self.container.get_archive(source.rstrip("/") + "/.")
        dest.mkdir(parents=True, exist_ok=True)
        with subprocess.Popen(["tar", "-C", str(dest), "-xf", "-"], stdin=subprocess.PIPE) as tar:
            for chunk in stream:
                tar.stdin.write(chunk)  # type: ignore[union-attr]
        if tar.returncode != 0:
            raise ContainerError(f"{self.what}: cannot copy {source} out of the container because tar returned {tar.returncode}")

    def say(self, text: str, end: str = "\n") -> None:
        print(text, end=end, flush=True)


def set_signal(signum: int, handler: Any) -> Any:
    """signal.signal, except off the main thread (doit -n), where Python forbids it."""
    if threading.current_thread() is not threading.main_thread():
        return handler
    return signal.signal(signum, handler)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Hold off SIGINT/SIGTERM while creating or removing a container, so neither is left half-done; a second
    signal does not wait (the lifeline and the next run remove what is left)."""
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        pending.append(signum)
        if len(pending) > 1:
            raise lifecycle.Interrupted(signum) if signum != signal.SIGINT else KeyboardInterrupt

    handlers = {s: set_signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in handlers.items():
            set_signal(s, h)
    if pending:
        raise lifecycle.Interrupted(pending[0]) if pending[0] != signal.SIGINT else KeyboardInterrupt


def engine_answers(client: docker.DockerClient) -> bool:
    try:
        with short_requests(client, ANSWER_SECONDS):
            client.api.ping()
    except Exception:
        return False
    return True


@contextmanager
def short_requests(client: docker.DockerClient, seconds: float) -> Iterator[None]:
    saved, client.api.timeout = client.api.timeout, seconds
    try:
        yield
    finally:
        client.api.timeout = saved


def leftover_containers(client: docker.DockerClient, owner: str | None = None) -> list[str]:
    """Containers this tool made (for one artifacts directory, if given) that still exist."""
    label = f"{LABEL}={owner}" if owner else LABEL
    return [c.name for c in client.containers.list(all=True, filters={"label": label})]
