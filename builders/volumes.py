"""Docker named volumes: the Go toolchain, copied in once and mounted read-only into every build."""
from __future__ import annotations

from pathlib import Path

import docker
import docker.errors

from .container import Container
from .files import locked

MARKER = ".criobuild-complete"
_known_filled: set[str] = set()  # checked in this process: recipes of one run share toolchains


def go_volume_name(goroot: Path, sha256: str) -> str:
    """One volume per tarball, not per version: two tarballs of one Go version (go.dev's and a mirror's
    repack) must not refill the volume under a build that is using it."""
    return "criobuild-" + goroot.parent.name.replace("+", "_") + "-" + sha256[:12]


def volume_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.volumes.get(name)
    except docker.errors.NotFound:
        return False
    return True


def ensure_go_volume(client: docker.DockerClient, image: str, goroot: Path, sha256: str) -> str:
    """A volume holding goroot's contents (from the tarball with this sha256); filled once, marked last."""
    name = go_volume_name(goroot, sha256)
    if name in _known_filled:
        return name
    client.volumes.create(name, labels={"io.criobuild": "go"})
    # One fill at a time: two runs emptying and filling one volume would each leave the other a broken Go.
    with locked(goroot.parent.parent / f"{name}.volume.lock", f"waiting for another build that is filling the volume {name}"):
        with Container(client, image, volumes={name: {"bind": "/v", "mode": "rw"}}, what=f"toolchain volume {name}") as box:
            if box.container.exec_run(["test", "-e", f"/v/{MARKER}"]).exit_code != 0:
                box.call(["find", "/v", "-mindepth", "1", "-delete"])  # a fill that was interrupted
                box.copy_into(goroot, "/v")
                box.call(["touch", f"/v/{MARKER}"])
    _known_filled.add(name)
    return name
