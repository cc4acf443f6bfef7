"""Which way sources reach the build container, and as whom the build runs."""
from __future__ import annotations

import pytest

from builders import workspace
from builders.settings import load_settings
from builders.workspace import Workspace, choose_workspace


class FakeEngine:
    def __init__(self, security_options: list[str]) -> None:
        self.security_options = security_options

    def info(self) -> dict:
        return {"SecurityOptions": self.security_options}


ROOTFUL = FakeEngine(["name=seccomp,profile=default"])
ROOTLESS = FakeEngine(["name=seccomp,profile=default", "name=rootless"])


@pytest.mark.parametrize(
    ("docker_host", "transfer", "mount"),
    [
        ("", "auto", True),
        ("unix:///run/user/1000/docker.sock", "auto", True),
        ("tcp://pi.lan:2375", "auto", False),
        ("ssh://pi@pi.lan", "auto", False),
        ("ssh://pi@pi.lan", "mount", True),
        ("", "copy", False),
    ],
)
def test_local_engines_get_mounts_and_remote_ones_copies(monkeypatch: pytest.MonkeyPatch, docker_host: str, transfer: str, mount: bool) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    assert choose_workspace(ROOTFUL, transfer).mount is mount


@pytest.mark.parametrize(
    ("euid", "engine", "user"),
    [(0, ROOTFUL, ""), (1000, ROOTFUL, "1000:1001"), (1000, ROOTLESS, "")],
)
def test_mounted_builds_run_as_the_invoking_user_unless_root_is_already_them(monkeypatch: pytest.MonkeyPatch, euid: int, engine: FakeEngine, user: str) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(workspace.os, "geteuid", lambda: euid)
    monkeypatch.setattr(workspace.os, "getegid", lambda: 1001)
    assert choose_workspace(engine, "auto") == Workspace(mount=True, user=user)


def test_copied_builds_run_as_root_in_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace.os, "geteuid", lambda: 1000)
    assert choose_workspace(ROOTFUL, "copy") == Workspace(mount=False, user="")


def test_mounts_name_the_source_and_output_trees() -> None:
    volumes = Workspace(mount=True, user="").volumes("/home/me/work/cri-o", "/home/me/artifacts/cri-o.partial", "/src", "/out")
    assert volumes == {
        "/home/me/work/cri-o": {"bind": "/src", "mode": "rw"},
        "/home/me/artifacts/cri-o.partial": {"bind": "/out", "mode": "rw"},
    }
    assert Workspace(mount=False, user="").volumes("/a", "/b", "/src", "/out") == {}


def test_unknown_transfer_setting_is_refused() -> None:
    with pytest.raises(Exception, match="CRIOBUILD_TRANSFER='rsync' is not allowed") as refused:
        load_settings({"CRIOBUILD_TRANSFER": "rsync"})
    assert refused.value.hint == "set it to one of: auto, mount, copy"
