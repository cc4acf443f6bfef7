"""Every Debian release our mirror serves, 64- and 32-bit: the other targets of a recipe (`<recipe>@<release>-<arch>`)
build, package for their own release and install and run with `doit accept` in a clean container of that target.

trixie arm64 and armhf, and bookworm arm64, are covered by test_era_1_36.py, test_target_armhf.py and
test_build_pipeline.py; these are the rest: bookworm armhf (32-bit Raspberry Pi OS 12) with the 2026 shape,
bullseye arm64 and armhf (Raspberry Pi OS 11) with the 1.18 shape of that time.
"""
from __future__ import annotations

import pytest

from builders.arch import Arch
from builders.elf import built_for
from tests.fixtures.pipeline import Pipeline
from tests.integration.test_deb import members

pytestmark = [pytest.mark.docker, pytest.mark.emulation, pytest.mark.slow]

CASES = {
    # instance: (the session pipeline whose recipe it is, deb suffix, where that release's debhelper puts units, versions accept prints)
    "crio-1.36@bookworm-armhf": ("pipeline_armhf", "~deb12_armhf", "/lib/systemd/system/crio.service", ("crio version 1.36.1", "crun version 1.26", "runc version 1.4.3")),
    "crio-1.18@bullseye-arm64": ("cross_pipeline", "~deb11_arm64", "/lib/systemd/system/crio.service", ("crio version 1.18.1", "conmon version 2.0.19", "crictl version 1.18.0")),
    "crio-1.18@bullseye-armhf": ("cross_pipeline", "~deb11_armhf", "/lib/systemd/system/crio.service", ("crio version 1.18.1", "conmon version 2.0.19", "runc version 1.0.0-rc10")),
}  # fmt: skip


@pytest.mark.parametrize("instance", list(CASES))
def test_the_target_builds_packages_for_its_release_and_installs_and_runs(request: pytest.FixtureRequest, instance: str) -> None:
    fixture, suffix, unit, versions = CASES[instance]
    pipeline: Pipeline = request.getfixturevalue(fixture)
    arch = Arch(instance.rsplit("-", 1)[1])
    result = pipeline.doit(f"build:{instance}", f"accept:{instance}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    artifacts = pipeline.root / "artifacts" / instance
    debs = sorted(artifacts.glob("*.deb"))
    assert debs and all(d.name.endswith(f"{suffix}.deb") for d in debs), [d.name for d in debs]
    crio = next(d for d in debs if d.name.startswith("cri-o_"))
    assert unit in members(crio)
    staging = artifacts / "staging"
    crio_binary = staging / "cri-o/usr/bin/crio"
    assert built_for(crio_binary, arch) is None
    log = (artifacts / "logs" / "accept.log").read_text()
    for line in versions:
        assert line in log, line
    suite = instance.split("@")[1].rsplit("-", 1)[0]
    assert f"install on debian {suite} {arch}" in result.stdout
