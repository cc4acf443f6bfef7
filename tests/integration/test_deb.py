"""The .debs of the fixture upstreams: made by `doit deb:...`, checked by lintian, installed with apt in a clean arm64 container.

One module-wide build does everything once (emulated dh runs are slow): an older cri-o at revision 0 for the
upgrade, then the packages twice to compare bytes. One container session then installs, removes,
purges and upgrades them.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from builders.container import LABEL
from tests.fixtures.pipeline import Pipeline

pytestmark = [pytest.mark.docker, pytest.mark.emulation, pytest.mark.slow]

PACKAGES = ("cri-o", "cri-o-conmon", "cri-o-cni-plugins", "cri-tools", "cri-o-runc")
TASKS = tuple(f"deb:crio-1.18:{p}" for p in PACKAGES)
# What crio makes of its configuration (crio.conf, then our drop-in): conmon, runc and the CNI plugins where the packages put them.
CONF_NAMES_INSTALLED_PATHS = r"""
crio config 2>/dev/null > /tmp/effective.conf
conmon=$(sed -n 's/^conmon = "\(.*\)"/\1/p' /tmp/effective.conf)
test "$conmon" = /usr/bin/conmon && test -x "$conmon"
runc=$(sed -n '/^\[crio.runtime.runtimes.runc\]/,/^\[/s/^runtime_path = "\(.*\)"/\1/p' /tmp/effective.conf)
test "$runc" = /usr/libexec/crio/runc && test -x "$runc"
grep -q '^default_runtime = "runc"' /tmp/effective.conf
grep -q '"/usr/lib/cni"' /tmp/effective.conf
test -x /usr/lib/cni/bridge
"""
CONFFILES = (
    "/etc/crio/crio.conf", "/etc/crio/crio.conf.d/10-crio.conf", "/etc/default/crio", "/etc/crictl.yaml",
    "/etc/cni/net.d/10-crio-bridge.conf", "/etc/cni/net.d/99-loopback.conf",
)  # fmt: skip


@dataclass
class Debs:
    current: dict[str, Path]  # package -> the .deb in artifacts/crio-1.18 (revision 1)
    first: dict[str, Path]  # the same recipe packaged once before
    old_crio: Path  # cri-o at revision 0, for the upgrade


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def debs_in(directory: Path) -> dict[str, Path]:
    return {p.name.split("_")[0]: p for p in sorted(directory.glob("*.deb"))}


def run_doit(pipeline: Pipeline, *args: str) -> None:
    result = pipeline.doit(*args)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.fixture(scope="module")
def debs(pipeline: Pipeline, built, tmp_path_factory) -> Iterator[Debs]:
    keep = tmp_path_factory.mktemp("debs")
    try:
        pipeline.write_recipe(revision="0")  # the default maintainer, as a user gets it
        run_doit(pipeline, "deb:crio-1.18:cri-o")
        (old := keep / "old").mkdir()
        old_crio = Path(shutil.move(next(pipeline.artifacts.glob("cri-o_*-0~*.deb")), old))
        pipeline.write_recipe()
        run_doit(pipeline, "-n", "2", *TASKS)
        (first := keep / "first").mkdir()
        for deb in debs_in(pipeline.artifacts).values():
            shutil.move(deb, first)
        run_doit(pipeline, "-n", "2", *TASKS)  # the targets are gone, so doit packages them again
        yield Debs(debs_in(pipeline.artifacts), debs_in(first), old_crio)
    finally:
        pipeline.write_recipe()


def test_one_deb_per_component_named_the_debian_way(debs: Debs) -> None:
    assert sorted(p.name for p in debs.current.values()) == [
        "cri-o-cni-plugins_0.8.5-1~deb12_arm64.deb",
        "cri-o-conmon_2.0.19-1~deb12_arm64.deb",
        "cri-o-runc_1.0.0~rc10-1~deb12_arm64.deb",
        "cri-o_1.18.1-1~deb12_arm64.deb",
        "cri-tools_1.18.0-1~deb12_arm64.deb",
    ]
    assert debs.old_crio.name == "cri-o_1.18.1-0~deb12_arm64.deb"


def test_packaging_twice_gives_byte_identical_debs(debs: Debs) -> None:
    assert {p: sha256(d) for p, d in debs.first.items()} == {p: sha256(d) for p, d in debs.current.items()}


def test_lintian_finds_no_errors_and_every_warning_is_overridden(debs: Debs) -> None:
    result = subprocess.run(["lintian", "--fail-on", "error,warning", *map(str, debs.current.values())], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert shown == []


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(deb), name], capture_output=True, text=True, check=True).stdout.strip()


def test_cri_o_depends_on_its_runtime_companions_and_what_its_binaries_link(debs: Debs) -> None:
    depends = field(debs.current["cri-o"], "Depends")
    for needed in ("cri-o-runc (>= 1.0.0~rc10~)", "iptables", "conntrack", "cri-o-conmon (>= 2.0.19~)", "cri-o-cni-plugins (>= 0.8.5~) | kubernetes-cni"):
        assert needed in depends.split(", "), depends
    assert "libglib2.0-0" in field(debs.current["cri-o-conmon"], "Depends")  # from dpkg-shlibdeps, not written by hand


def members(deb: Path) -> dict[str, tuple[str, str, str]]:
    """path -> (mode, owner, symlink target or "") from `dpkg-deb --contents`."""
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True).stdout
    out = {}
    for line in listing.splitlines():
        mode, owner, _size, _date, _time, rest = line.split(None, 5)
        path, _, target = rest.partition(" -> ")
        out[path.removeprefix(".").rstrip("/") or "/"] = (mode, owner, target)
    return out


def test_cri_o_contents_follow_debian_and_upstream_conventions(debs: Debs) -> None:
    files = members(debs.current["cri-o"])
    for path in ("/usr/bin/crio", "/usr/bin/crio-status", "/usr/bin/pinns", *CONFFILES, "/lib/systemd/system/crio.service",
                 "/lib/systemd/system/crio-wipe.service", "/lib/systemd/system/crio-shutdown.service",
                 "/usr/share/doc/cri-o/copyright", "/usr/share/doc/cri-o/changelog.Debian.gz"):  # fmt: skip
        assert path in files, path
    assert files["/lib/systemd/system/cri-o.service"][2] == "crio.service"  # upstream's alias link, kept
    assert files["/usr/share/cri-o/kernel_check.py"][0] == "-rwxr-xr-x"
    assert {owner for _, owner, _ in files.values()} == {"root/root"}
    conffiles = subprocess.run(["dpkg-deb", "--info", str(debs.current["cri-o"]), "conffiles"], capture_output=True, text=True, check=True).stdout.split()
    assert sorted(conffiles) == sorted(CONFFILES)


def test_package_contents_of_the_companions(debs: Debs) -> None:
    assert "/usr/bin/conmon" in members(debs.current["cri-o-conmon"])
    assert {"/usr/bin/crictl", "/usr/bin/critest", "/usr/share/man/man1/crictl.1.gz"} <= set(members(debs.current["cri-tools"]))
    assert {"/usr/libexec/crio/runc", "/usr/share/man/man8/cri-o-runc.8.gz"} <= set(members(debs.current["cri-o-runc"]))
    assert "/usr/share/man/man8/conmon.8.gz" in members(debs.current["cri-o-conmon"])  # help2man: 2.0.19 has no page of its own
    assert {"/usr/lib/cni/bridge", "/usr/lib/cni/loopback", "/usr/lib/cni/host-local", "/usr/lib/cni/portmap"} <= set(members(debs.current["cri-o-cni-plugins"]))


def test_postinst_has_debhelpers_systemd_snippets_and_the_kernel_check(debs: Debs, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "--control", str(debs.current["cri-o"]), str(tmp_path)], check=True)
    postinst = (tmp_path / "postinst").read_text()
    assert "deb-systemd-helper enable 'crio.service'" in postinst
    assert "deb-systemd-invoke $_dh_action 'crio-shutdown.service' 'crio-wipe.service' 'crio.service'" in postinst
    assert "command -v python3" in postinst
    assert "python3 /usr/share/cri-o/kernel_check.py --quiet-warn --crio-version 1.18.1 || true" in postinst
    assert "cri-o.service" not in postinst  # an alias, not a unit of its own


# --------------------------------------------------------------------------- apt in a clean arm64 container


class Box:
    def __init__(self, container) -> None:
        self.container = container
        self.transcript: list[str] = []

    def sh(self, script: str, ok: bool = True) -> str:
        code, out = self.container.exec_run(["bash", "-euo", "pipefail", "-c", script], environment={"DEBIAN_FRONTEND": "noninteractive"})
        text = out.decode(errors="replace")
        self.transcript.append(f"$ {script}\n{text}")
        if ok:
            assert code == 0, "\n".join(self.transcript)[-6000:]
        return text

    def put(self, files: dict[str, Path], dest: str) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, path in files.items():
                tar.add(path, arcname=name)
        self.sh(f"mkdir -p {dest}")
        self.container.put_archive(dest, buffer.getvalue())


@contextmanager
def clean_container(docker_engine, image: str) -> Iterator[Box]:
    """A plain bookworm arm64 container with the network (apt needs the mirror), always removed."""
    container = docker_engine.containers.run(
        image, ["sleep", "infinity"], name=f"criobuild-deb-{uuid.uuid4().hex[:8]}", labels={LABEL: "deb-test"}, detach=True
    )
    try:
        yield Box(container)
    finally:
        container.remove(force=True, v=True)


def test_apt_installs_removes_purges_and_upgrades_in_a_clean_container(debs: Debs, pipeline: Pipeline, docker_engine, arm64_base_image) -> None:
    up = pipeline.upstreams
    with clean_container(docker_engine, arm64_base_image) as box:
        box.put({d.name: d for d in debs.current.values()}, "/debs/new")
        box.put({debs.old_crio.name: debs.old_crio}, "/debs/old")

        # A fresh install resolves runc, iptables, conntrack and the shared libraries from the mirror.
        box.sh("apt-get update -q && apt-get install -y -q /debs/new/*.deb")
        wanted = ("cri-o-runc", "iptables", "conntrack", "golang-github-containers-common", "python3")  # Depends, then Recommends
        status = dict(line.split(" ", 1) for line in box.sh(f"dpkg-query -W -f '${{Package}} ${{Version}} ${{Status}}\\n' cri-o {' '.join(wanted)}").splitlines())
        assert status["cri-o"] == "1.18.1-1~deb12 install ok installed"
        assert all(status[dep].endswith(" install ok installed") for dep in wanted), status

        crio = box.sh("crio --version")
        assert "1.18.1" in crio and up["cri-o"].tags["v1.18.1"] in crio
        assert box.sh("conmon --version").splitlines()[:2] == ["conmon version 2.0.19", f"commit: {up['conmon'].tags['v2.0.19']}"]
        assert box.sh("crictl --version").strip() == "crictl version 1.18.0"
        assert "v0.8.5" in box.sh("/usr/lib/cni/bridge 2>&1 || true")

        # crio.conf names where these packages put conmon, runc and the CNI plugins.
        box.sh(CONF_NAMES_INSTALLED_PATHS)

        conffiles = box.sh("dpkg-query -W -f '${Conffiles}' cri-o")
        assert sorted(line.split()[0] for line in conffiles.strip().splitlines()) == sorted(CONFFILES)
        assert box.sh("readlink /lib/systemd/system/cri-o.service").strip() == "crio.service"
        assert "EnvironmentFile=-/etc/default/crio" in box.sh("cat /lib/systemd/system/crio.service")  # not Red Hat's /etc/sysconfig
        assert "CRIO_CONFIG_OPTIONS" in box.sh("cat /etc/default/crio")
        assert box.sh("readlink /etc/systemd/system/multi-user.target.wants/crio.service").strip() == "/lib/systemd/system/crio.service"
        assert "unix:///var/run/crio/crio.sock" in box.sh("cat /etc/crictl.yaml")

        # Removing keeps the conffiles; purging removes them.
        box.sh("echo '# edited by the test' >> /etc/crio/crio.conf && apt-get remove -y -q cri-o")
        assert "rc  cri-o" in box.sh("dpkg -l cri-o | tail -1")
        assert box.sh("tail -1 /etc/crio/crio.conf").strip() == "# edited by the test"
        box.sh("apt-get purge -y -q cri-o")
        assert box.sh("ls /etc/crio/crio.conf /etc/crio/crio.conf.d/10-crio.conf /etc/crictl.yaml /etc/cni/net.d/10-crio-bridge.conf 2>&1 || true").count("No such file") == 4
        assert box.sh("dpkg-query -W cri-o 2>&1 || true").strip().startswith("dpkg-query: no packages found")

        # An upgrade from an older build keeps an edited crio.conf.
        box.sh("apt-get install -y -q /debs/old/cri-o_*.deb && echo '# edited before the upgrade' >> /etc/crio/crio.conf")
        box.sh("apt-get install -y -q /debs/new/cri-o_*.deb")
        assert box.sh("dpkg-query -W -f '${Version}' cri-o") == "1.18.1-1~deb12"
        assert box.sh("tail -1 /etc/crio/crio.conf").strip() == "# edited before the upgrade"
