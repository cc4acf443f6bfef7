"""Docker named volumes: the Go toolchain, copied in once and mounted read-only into every build."""
from __future__ import annotations

from pathlib import Path

import docker

from .container import Container

MARKER = ".criobuild-complete"
_known_filled: set[tuple[str, str]] = set()  # checked in this process: doit compiles four components in one


def go_volume_name(goroot: Path) -> str:
    return "criobuild-" + goroot.parent.name.replace("+", "_")


def ensure_go_volume(client: docker.DockerClient, image: str, goroot: Path, sha256: str) -> str:
    """A volume holding goroot's contents (from the tarball with this sha256); filled once, marked last."""
    name = go_volume_name(goroot)
    key = sha256[:16]
    if (name, key) in _known_filled:
        return name
    client.volumes.create(name, labels={"io.criobuild": "go"})
    with Container(client, image, volumes={name: {"bind": "/v", "mode": "rw"}}, what=f"toolchain volume {name}") as box:
        if box.container.exec_run(["test", "-e", f"/v/{MARKER}-{key}"]).exit_code != 0:
            box.call(["find", "/v", "-mindepth", "1", "-delete"])
            box.copy_into(goroot, "/v")
            box.call(["touch", f"/v/{MARKER}-{key}"])
    _known_filled.add((name, key))
    return name
