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

from .errors import ContainerError
from .tools import APT_HINTS, hint_for

LABEL = "io.criobuild"


ANSWER_SECONDS = 5  # an engine that has not answered a ping by then is not going to
REQUEST_SECONDS = 600  # builds and image pulls are slow requests


def docker_client() -> docker.DockerClient:
    """A client of the engine DOCKER_HOST names, refused at once with Docker's own words if it does not answer."""
    try:
        client = docker.from_env(timeout=ANSWER_SECONDS)
        client.ping()
    except docker.errors.DockerException as e:
        message, hint = daemon_problem(str(e))
        raise ContainerError(message, hint=hint) from None
    client.api.timeout = REQUEST_SECONDS
    return client


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
        self.command = command or ["sleep", "infinity"]
        self.options = options or {}  # more of docker's create arguments (cap_add, tmpfs, mounts …)
        self.container: Any = None
        self.timings: list[tuple[list[str], float]] = []  # each call's argv and wall time

    def __enter__(self) -> Container:
        with terminate_as_interrupt():
            self.container = self.client.containers.create(
                self.image, self.command, name=f"criobuild-{uuid.uuid4().hex[:12]}",
                labels={LABEL: self.owner or "criobuild"}, volumes=self.volumes, environment=self.env,
                working_dir=self.workdir, network_mode=self.network, user=self.user, read_only=self.read_only, detach=True, **self.options,
            )  # fmt: skip
            self.container.start()
        self._previous_term = set_signal(signal.SIGTERM, raise_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        set_signal(signal.SIGTERM, self._previous_term)
        with terminate_as_interrupt():
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
            image = self.container.commit(changes=[f"LABEL {LABEL}={self.owner or 'criobuild'}"])
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


def raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Hold off SIGINT/SIGTERM while creating or removing a container, so neither is left half-done."""
    pending: list[int] = []
    handlers = {s: set_signal(s, lambda n, f: pending.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in handlers.items():
            set_signal(s, h)
        if pending:
            raise KeyboardInterrupt


def leftover_containers(client: docker.DockerClient, owner: str | None = None) -> list[str]:
    """Containers this tool made (for one artifacts directory, if given) that still exist."""
    label = f"{LABEL}={owner}" if owner else LABEL
    return [c.name for c in client.containers.list(all=True, filters={"label": label})]
