"""The release tarball of the fixture upstreams, installed and removed in a clean emulated arm64 container."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from builders.arch import Arch
from builders.container import Container
from builders.elf import E_MACHINE, elf_machine
from builders.images import build_image, image_exists
from builders.recipe import load_recipe
from builders.settings import load_settings
from builders.tarball import tarball_path, write_sums_and_manifest
from tests.fixtures.pipeline import Pipeline

pytestmark = [pytest.mark.docker, pytest.mark.emulation, pytest.mark.slow]


@dataclass
class Packaged:
    directory: Path
    tarball: Path
    manifest: dict
    sums: str


def package(pipeline: Pipeline) -> Packaged:
    """`doit tarball:crio-1.18`, then SHA256SUMS and manifest.json over what is in the directory.

    The sums are written by calling write_sums_and_manifest directly: `doit sums:crio-1.18` also
    needs the .debs (builders/deb.py), which these tests do not build.
    """
    result = pipeline.doit("tarball:crio-1.18")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    settings = load_settings(os.environ | pipeline.env)
    recipe = load_recipe(Path(pipeline.env["CRIOBUILD_RECIPES"]) / "crio-1.18.toml")
    write_sums_and_manifest(recipe, settings)
    directory = pipeline.artifacts
    return Packaged(
        directory, tarball_path(recipe, settings), json.loads((directory / "manifest.json").read_text()), (directory / "SHA256SUMS").read_text()
    )


@pytest.fixture(scope="module")
def packaged(pipeline: Pipeline, built) -> Packaged:
    return package(pipeline)


def test_tarball_is_named_like_upstreams_and_holds_every_binary(packaged: Packaged) -> None:
    assert packaged.tarball.name == "cri-o.arm64.v1.18.1.tar.gz"
    with tarfile.open(packaged.tarball) as tar:
        names = set(tar.getnames())
    for name in ("bin/crio", "bin/crio-status", "bin/pinns", "bin/conmon", "bin/crictl", "cni-plugins/bridge",
                 "cni-plugins/loopback", "cni-plugins/host-local", "cni-plugins/portmap", "etc/crio/crio.conf",
                 "etc/crio/crio.conf.d/10-crio.conf", "etc/default/crio", "libexec/crio/runc",
                 "etc/crictl.yaml", "etc/cni/net.d/10-crio-bridge.conf", "etc/containers/policy.json",
                 "systemd/crio.service", "systemd/cri-o.service", "install", "README.md", "kernel_check.py"):  # fmt: skip
        assert f"cri-o/{name}" in names, name


def test_manifest_names_every_input(packaged: Packaged, pipeline: Pipeline, go_tarballs, docker_engine, arm64_builder_image, arm64_base_image) -> None:
    m = packaged.manifest
    pins = {"cri-o": "v1.18.1", "conmon": "v2.0.19", "cni-plugins": "v0.8.5", "cri-tools": "v1.18.0", "runc": "v1.0.0-rc10"}
    for component, tag in pins.items():
        assert m["components"][component]["tag"] == tag
        assert m["components"][component]["commit"] == pipeline.upstreams[component].tags[tag]
        assert m["components"][component]["repo"] == pipeline.upstreams[component].url
    assert [go["sha256"] for go in m["go"]] == [hashlib.sha256(go_tarballs.path[Arch.arm64].read_bytes()).hexdigest()]
    assert m["builder_image"] == {"name": arm64_builder_image, "id": docker_engine.images.get(arm64_builder_image).id, "repo_digests": []}
    assert m["base_image"]["name"] == arm64_base_image
    assert m["base_image"]["id"] == docker_engine.images.get(arm64_base_image).id
    assert m["mode"] == "qemu"
    crio = pipeline.upstreams["cri-o"].path
    epoch = subprocess.run(["git", "-C", str(crio), "log", "-1", "--format=%ct", pins["cri-o"]], capture_output=True, text=True, check=True)
    assert m["source_date_epoch"] == int(epoch.stdout)
    artifact = next(a for a in m["artifacts"] if a["name"] == packaged.tarball.name)
    assert artifact == {"name": packaged.tarball.name, "size": packaged.tarball.stat().st_size, "sha256": hashlib.sha256(packaged.tarball.read_bytes()).hexdigest()}
    with tarfile.open(packaged.tarball) as tar:
        assert all(i.mtime == m["source_date_epoch"] and i.uid == 0 and i.uname == "root" for i in tar)


def test_sha256sum_checks_the_artifacts(packaged: Packaged) -> None:
    result = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=packaged.directory, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{packaged.tarball.name}: OK" in result.stdout and "manifest.json: OK" in result.stdout


def test_packaging_twice_gives_identical_checksums(packaged: Packaged, pipeline: Pipeline) -> None:
    packaged.tarball.unlink()
    again = package(pipeline)
    assert again.sums == packaged.sums
    assert again.manifest == packaged.manifest


# --------------------------------------------------------------------------- in a clean arm64 container


def run(box: Container, script: str) -> tuple[int, str]:
    result = box.container.exec_run(["sh", "-c", script], demux=True)
    out, err = result.output
    return result.exit_code, (out or b"").decode() + (err or b"").decode()


def ok(box: Container, script: str) -> str:
    code, text = run(box, script)
    assert code == 0, f"`{script}` returned {code}:\n{text}"
    return text


# Type, mode, path, link target and mtime of everything under a root, then each file's sha256.
FINGERPRINT = "cd {root} && find . -printf '%y %m %p %l %T@\\n' | LC_ALL=C sort && find . -type f -exec sha256sum {{}} + | LC_ALL=C sort"
SHAPE = FINGERPRINT.replace(" %T@", "")  # the same without mtimes (a directory's cannot come back after uninstall)


@pytest.fixture(scope="module")
def runtime_image(packaged: Packaged, docker_engine, arm64_base_image) -> str:
    """The clean arm64 base image plus exactly the Debian packages the tarball says its binaries need."""
    packages = packaged.manifest["tarball"]["runtime"]["debian_packages"]
    if not packages:
        return arm64_base_image
    dockerfile = (
        f"# base image id {docker_engine.images.get(arm64_base_image).id}\n"
        f"FROM {arm64_base_image}\n"
        "RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        + " ".join(packages) + " && rm -rf /var/lib/apt/lists/*\n"
    )
    name = f"criobuild-test/runtime:{hashlib.sha256(dockerfile.encode()).hexdigest()[:12]}"
    if not image_exists(docker_engine, name):
        build_image(docker_engine, dockerfile, name)
    return name


@pytest.fixture(scope="module")
def target(packaged: Packaged, docker_engine, runtime_image, tmp_path_factory):
    """One clean arm64 bookworm container (emulated) with the tarball unpacked in /work/cri-o."""
    upload = tmp_path_factory.mktemp("upload")
    shutil.copy(packaged.tarball, upload)
    with Container(docker_engine, runtime_image, what="tarball install test") as box:
        box.copy_into(upload, "/work")
        assert ok(box, "uname -m").strip() == "aarch64"
        ok(box, f"cd /work && tar -xzf {packaged.tarball.name}")
        yield box


def test_install_uninstall_in_a_clean_arm64_container(target: Container, packaged: Packaged, tmp_path: Path) -> None:
    box = target
    out = ok(box, "cd /work/cri-o && DESTDIR=/tmp/root ./install")
    assert "systemctl daemon-reload" in out and "enable --now crio" in out

    installed = ok(box, "cd /tmp/root && find . ! -type d | sed 's|^\\.||' | LC_ALL=C sort").split()
    assert installed == packaged.manifest["tarball"]["install"]["files"]

    # Every binary is an aarch64 ELF and runs, printing the pinned version.
    box.copy_out("/tmp/root", tmp_path / "root")
    binaries = sorted(p for d in ("usr/local/bin", "opt/cni/bin") for p in (tmp_path / "root" / d).iterdir())
    assert len(binaries) == 10  # crio, crio-status, pinns, conmon, crictl, critest and four CNI plugins
    for path in binaries:
        assert elf_machine(path) == E_MACHINE[Arch.arm64], path
    versions = {c: m["version"] for c, m in packaged.manifest["components"].items()}
    bindir = "/tmp/root/usr/local/bin"
    assert ok(box, f"{bindir}/crio --version").startswith(f"crio version {versions['cri-o']}\n")
    assert ok(box, f"{bindir}/crio-status --version").strip() == f"crio-status version {versions['cri-o']}"
    assert ok(box, f"{bindir}/conmon --version").startswith(f"conmon version {versions['conmon']}\n")
    assert ok(box, f"{bindir}/crictl --version").strip() == f"crictl version {versions['cri-tools']}"
    assert ok(box, "/tmp/root/usr/local/libexec/crio/runc --version").startswith(f"runc version {versions['runc']}\n")
    code, text = run(box, f"{bindir}/pinns")  # like upstream's, it has no --version: it runs and asks for its arguments
    assert code != 0 and "Path for pinning namespaces not specified" in text
    for plugin in ("bridge", "loopback", "host-local", "portmap"):
        assert f"v{versions['cni-plugins']}" in ok(box, f"/tmp/root/opt/cni/bin/{plugin}"), plugin

    # The installed configuration points at the installed binaries.
    conf = ok(box, "cat /tmp/root/etc/crio/crio.conf /tmp/root/etc/crio/crio.conf.d/10-crio.conf")
    assert 'conmon = "/usr/local/bin/conmon"' in conf and '"/opt/cni/bin",' in conf and "/usr/lib/cni" not in conf
    assert 'runtime_path = "/usr/local/libexec/crio/runc"' in conf
    assert "ExecStart=/usr/local/bin/crio " in ok(box, "cat /tmp/root/usr/local/lib/systemd/system/crio.service")

    # A second install changes nothing, not even an mtime.
    first = ok(box, FINGERPRINT.format(root="/tmp/root"))
    ok(box, "cd /work/cri-o && DESTDIR=/tmp/root ./install")
    assert ok(box, FINGERPRINT.format(root="/tmp/root")) == first

    # Uninstall removes exactly that: nothing is left but the DESTDIR itself.
    ok(box, "cd /work/cri-o && DESTDIR=/tmp/root ./install --uninstall")
    assert ok(box, "find /tmp/root").split() == ["/tmp/root"]


def test_install_keeps_what_the_target_already_has(target: Container) -> None:
    box = target
    ok(box, "mkdir -p /tmp/pre/etc/containers /tmp/pre/usr/local/bin && echo '{}' > /tmp/pre/etc/containers/policy.json && touch /tmp/pre/usr/local/bin/mine")
    before = ok(box, SHAPE.format(root="/tmp/pre"))
    out = ok(box, "cd /work/cri-o && DESTDIR=/tmp/pre ./install")
    assert "/etc/containers/policy.json (was there before" in out
    assert ok(box, "cat /tmp/pre/etc/containers/policy.json").strip() == "{}"
    ok(box, "cd /work/cri-o && DESTDIR=/tmp/pre ./install --uninstall")
    assert ok(box, SHAPE.format(root="/tmp/pre")) == before


def test_install_under_another_prefix(target: Container) -> None:
    box = target
    ok(box, "cd /work/cri-o && ./install PREFIX=/usr CNIDIR=/usr/lib/cni DESTDIR=/tmp/usr")
    assert "ExecStart=/usr/bin/crio " in ok(box, "cat /tmp/usr/usr/lib/systemd/system/crio.service")
    conf = ok(box, "cat /tmp/usr/etc/crio/crio.conf")
    assert 'conmon = "/usr/bin/conmon"' in conf and '"/usr/lib/cni",' in conf and "/opt/cni/bin" not in conf
    assert "v0.8.5" in ok(box, "/tmp/usr/usr/lib/cni/bridge")
    ok(box, "cd /work/cri-o && ./install --uninstall PREFIX=/usr DESTDIR=/tmp/usr")
    assert ok(box, "find /tmp/usr").split() == ["/tmp/usr"]


def test_install_on_the_machine_itself_and_the_library_check(target: Container, packaged: Packaged) -> None:
    box = target
    roots = "/etc /opt /usr/local"
    before = ok(box, f"find {roots} -printf '%y %m %p %l\\n' | LC_ALL=C sort")
    out = ok(box, "cd /work/cri-o && ./install")
    assert "shared libraries are missing" not in out  # the runtime image has exactly the declared packages
    assert ok(box, "crio-status --version").strip().startswith("crio-status version")  # /usr/local/bin is on PATH
    ok(box, "cd /work/cri-o && ./install --uninstall")
    assert ok(box, f"find {roots} -printf '%y %m %p %l\\n' | LC_ALL=C sort") == before
    # A library the machine lacks is named, with the apt-get line.
    ok(box, "cd /work/cri-o && sed 's/^LIBRARIES=\"/LIBRARIES=\"libnot-there.so.9 /' install > install-test && chmod +x install-test")
    out = ok(box, "cd /work/cri-o && ./install-test && ./install-test --uninstall")
    assert "These shared libraries are missing: libnot-there.so.9\n" in out
    assert "sudo apt-get install " + " ".join(packaged.manifest["tarball"]["runtime"]["debian_packages"]) in out
