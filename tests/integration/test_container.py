"""builders.container against a real engine: what acceptance relies on beyond running commands."""
from __future__ import annotations

import uuid

import docker
import pytest

from builders.container import LABEL, Container, leftover_containers

pytestmark = [pytest.mark.docker, pytest.mark.emulation]


def test_a_read_only_copy_sees_the_installed_files_cannot_write_and_is_removed(docker_engine: docker.DockerClient, trixie_arm64_base_image: str) -> None:
    owner = f"test-{uuid.uuid4().hex[:8]}"
    with Container(docker_engine, trixie_arm64_base_image, what="read-only copy", owner=owner) as box:
        box.call(["sh", "-c", "echo installed > /usr/local/bin/marker"])
        code, out = box.run_read_only(["sh", "-c", "cat /usr/local/bin/marker; uname -m; touch /usr/local/bin/other"])
        assert code != 0
        assert "installed" in out and "aarch64" in out and "Read-only file system" in out
        assert box.output(["cat", "/usr/local/bin/marker"]) == "installed\n"  # the original is untouched and still running
    assert leftover_containers(docker_engine, owner) == []
    assert docker_engine.images.list(filters={"label": f"{LABEL}={owner}"}) == []
