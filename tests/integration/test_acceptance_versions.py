"""`doit accept` runs each installed program's --version in the container and wants the pinned version, whole:
1.2 is not 1.20.3, and runc's "spec: 1.0.1-dev" is not runc 1.0.1."""
from __future__ import annotations

import pytest

from builders.acceptance import check_version
from builders.arch import host_arch
from builders.container import Container
from builders.errors import ContainerError
from builders.images import ensure_base_image
from builders.recipe import Target

pytestmark = [pytest.mark.docker]

CASES = [
    ("crio version 1.20.3\n   GitCommit: 0123abc\n   GoVersion: go1.15.15", "1.2", "its output names version 1.20.3, not 1.2"),
    ("runc version 1.4.3\ncommit: v1.4.3-0-gbb14dab\nspec: 1.2.1\ngo: go1.24.13", "1.4", "its output names version 1.4.3, not 1.4"),
    ("runc version 1.0.0-rc10\ncommit: dc9208a\nspec: 1.0.1-dev", "1.0.1", "its output names version 1.0.0-rc10, not 1.0.1"),
    ("crun version 1.26\ncommit: 3241e67\nrundir: /run/crun\nspec: 1.0.0\n+SECCOMP", "1.0.0", "its output names version 1.26, not 1.0.0"),
    ("conmon: unrecognized option '--version'", "2.0.19", "its output names no version (2.0.19 expected)"),
    ("crio version 1.36.1\n   Version: 1.36.1", "1.36.1", None),
    ("Version:        1.29.1\nGitCommit: 0123abc", "1.29.1", None),
    ("crictl version v1.36.0", "1.36.0", None),
    ("runc version 1.0.0-rc10\ncommit: dc9208a\nspec: 1.0.1-dev", "1.0.0-rc10", None),
    ("crio version 1.37.0\n   GitCommit: 0123abc", "1.37.0-dev", None),  # a snapshot of the release branch prints its release
]  # fmt: skip


@pytest.fixture(scope="module")
def box(docker_engine):
    target = Target(distro="debian", suite="trixie", arch=host_arch(), mirror="http://deb.debian.org/debian")
    with Container(docker_engine, ensure_base_image(docker_engine, target, "bootstrap"), what="accept crio-1.36") as container:
        yield container


@pytest.mark.parametrize("printed, pinned, problem", CASES)
def test_the_pinned_version_must_be_the_one_printed(box: Container, printed: str, pinned: str, problem: str | None) -> None:
    argv = ["printf", printed.replace("%", "%%") + "\n"]
    if problem is None:
        check_version(box, argv, pinned, "accept crio-1.36")
        return
    with pytest.raises(ContainerError) as info:
        check_version(box, argv, pinned, "accept crio-1.36")
    assert info.value.message.startswith(f"accept crio-1.36: `printf {argv[1]}` failed because {problem}:\n{printed}")
