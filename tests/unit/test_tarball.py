"""The release tarball and its install script on a synthetic staging tree (no Docker, no emulation).

The staging tree is shaped like builders/build.py's, with this host's /bin/true standing in for every
binary and a recipe whose target is this host's architecture, so the ELF checks stay honest. The
arm64 tarball of the fixture upstreams is tested in tests/integration/test_tarball.py.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from builders import elf, tarball
from builders.components import cri_o
from builders.arch import host_arch
from builders.errors import PackageError
from builders.recipe import load_recipe
from builders.settings import load_settings

EPOCH = 1590969600 + 86400
COMMITS = {"cri-o": "1" * 40, "conmon": "2" * 40, "cni-plugins": "3" * 40, "cri-tools": "4" * 40, "runc": "5" * 40}
VERSIONS = {"cri-o": "1.18.1", "conmon": "2.0.19", "cni-plugins": "0.8.5", "cri-tools": "1.18.0", "runc": "1.0.0-rc10"}
COMPONENTS = tuple(COMMITS)
ARCH = host_arch()

CRIO_CONF = """\
# crio.conf (test)
[crio.runtime]

# Path to conmon; searched in $PATH when empty.
conmon = "/usr/bin/conmon"

conmon_env = [
\t"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
]

# pinns_path = "/usr/bin/pinns"
pinns_path = ""

[crio.network]

network_dir = "/etc/cni/net.d/"

# Paths to directories where CNI plugin binaries are located.
plugin_dirs = [
\t"/usr/lib/cni",
\t"/opt/cni/bin",
]

[crio.metrics]
"""

DROP_IN = """\
[crio.runtime]
default_runtime = "runc"

[crio.runtime.runtimes.runc]
runtime_path = "/usr/libexec/crio/runc"
runtime_root = "/run/runc"
monitor_path = "/usr/bin/conmon"

[crio.network]
plugin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
"""

CRIO_SERVICE = """\
[Unit]
Description=Container Runtime Interface for OCI (CRI-O)

[Service]
Type=notify
ExecStart=/usr/bin/crio \\
          $CRIO_CONFIG_OPTIONS \\
          $CRIO_NETWORK_OPTIONS
ExecReload=/bin/kill -s HUP $MAINPID

[Install]
WantedBy=multi-user.target
"""

SHUTDOWN_SERVICE = """\
[Service]
Type=oneshot
ExecStart=/usr/bin/rm -f /var/lib/crio/crio.shutdown
ExecStop=/usr/bin/bash -c "/usr/bin/mkdir /var/lib/crio; /usr/bin/touch /var/lib/crio/crio.shutdown"
"""

WIPE_SERVICE = """\
[Service]
ExecStart=/usr/bin/crio \\
          $CRIO_CONFIG_OPTIONS \\
          wipe
Type=oneshot
"""

STAGED = {
    "cri-o": {
        "usr/bin/crio": "elf", "usr/bin/crio-status": "elf", "usr/bin/pinns": "elf",
        "etc/crio/crio.conf": CRIO_CONF, "etc/crio/crio.conf.d/10-crio.conf": DROP_IN,
        "etc/crictl.yaml": "runtime-endpoint: unix:///var/run/crio/crio.sock\n",
        "etc/cni/net.d/10-crio-bridge.conf": '{"cniVersion": "0.3.1", "name": "crio-bridge", "type": "bridge"}\n',
        "etc/cni/net.d/99-loopback.conf": '{"cniVersion": "0.3.1", "type": "loopback"}\n',
        "usr/lib/systemd/system/crio.service": CRIO_SERVICE,
        "usr/lib/systemd/system/crio-wipe.service": WIPE_SERVICE,
        "usr/lib/systemd/system/crio-shutdown.service": SHUTDOWN_SERVICE,
        "usr/share/man/man8/crio.8": ".TH CRIO 8\n", "usr/share/man/man5/crio.conf.5": ".TH CRIO.CONF 5\n",
        "usr/share/bash-completion/completions/crio": "complete -F _crio crio\n",
        "usr/share/oci-umount/oci-umount.d/crio-umount.conf": "/var/lib/containers/storage/*\n",
    },
    "conmon": {"usr/bin/conmon": "elf"},
    "cni-plugins": {"usr/lib/cni/bridge": "elf", "usr/lib/cni/loopback": "elf", "usr/lib/cni/host-local": "elf"},
    "cri-tools": {"usr/bin/crictl": "elf"},
    "runc": {"usr/libexec/crio/runc": "elf", "usr/share/man/man8/cri-o-runc.8": ".TH RUNC 8\n"},
}  # fmt: skip

RECIPE = f"""\
schema = 1

[go]
version = "1.14.15"
sha256 = {{ {ARCH} = "{"a" * 64}" }}

[target]
distro = "debian"
suite = "bookworm"
arch = "{ARCH}"

[config]
cgroup_manager = "systemd"
pause_image = "k8s.gcr.io/pause:3.2"
""" + "".join(
    f'\n[components.{c}]\nrepo = "https://example.invalid/{c}"\ntag = "v{VERSIONS[c]}"\ncommit = "{COMMITS[c]}"\n' for c in COMPONENTS
)


def stage(root: Path, component: str, files: dict[str, str], **manifest_overrides) -> None:
    tree = root / component
    shutil.rmtree(tree, ignore_errors=True)
    for rel, content in files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content == "elf":
            shutil.copy("/bin/true", path)
            path.chmod(0o755)
        else:
            path.write_text(content)
            path.chmod(0o644)
    if component == "cri-o":
        (tree / "usr/lib/systemd/system/cri-o.service").symlink_to("crio.service")
        (tree / "usr/share/containers/oci/hooks.d").mkdir(parents=True)  # empty: left out
    data = {
        "component": component, "version": VERSIONS[component], "repo": f"https://example.invalid/{component}",
        "tag": f"v{VERSIONS[component]}", "branch": None, "commit": COMMITS[component], "source_date_epoch": EPOCH,
        "go": "1.14.15", "mode": "native", "builder_image": "criobuild/builder:test", "binaries": [],
        "libraries": [{"soname": "libc.so.6", "package": "libc6", "version": "2.36-9", "arch": str(ARCH)}],  # what /bin/true links
    } | manifest_overrides  # fmt: skip
    (root / f"{component}.json").write_text(json.dumps(data))


@pytest.fixture
def world(tmp_path: Path):
    """(recipe, settings) with a complete synthetic staging tree."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "crio-1.18.toml").write_text(RECIPE)
    settings = load_settings({
        "CRIOBUILD_RECIPES": str(tmp_path / "recipes"), "CRIOBUILD_ARTIFACTS": str(tmp_path / "artifacts"),
        "CRIOBUILD_CACHE": str(tmp_path / "cache"),
    })  # fmt: skip
    recipe = load_recipe(tmp_path / "recipes" / "crio-1.18.toml")
    staging = tmp_path / "artifacts" / "crio-1.18" / "staging"
    for component, files in STAGED.items():
        stage(staging, component, files)
    return recipe, settings


def built(world) -> Path:
    recipe, settings = world
    tarball.make_tarball(recipe, settings)
    return tarball.tarball_path(recipe, settings)


# --------------------------------------------------------------------------- the archive itself


def test_tarball_is_named_like_upstreams_bundle(world) -> None:
    path = built(world)
    assert path.name == f"cri-o.{ARCH}.v1.18.1.tar.gz"
    assert not list(path.parent.glob("*.partial"))


def test_members_are_sorted_owned_by_root_and_dated_source_date_epoch(world) -> None:
    with tarfile.open(built(world)) as tar:
        infos = tar.getmembers()
    names = [i.name for i in infos]
    assert names[0] == "cri-o"
    assert all(n == "cri-o" or n.startswith("cri-o/") for n in names)
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert len(set(names)) == len(names)
    for info in infos:
        assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "root", "root"), info.name
        assert info.mtime == EPOCH, info.name
    modes = {i.name: (i.type, i.mode) for i in infos}
    assert modes["cri-o/bin/crio"] == (tarfile.REGTYPE, 0o755)
    assert modes["cri-o/cni-plugins/bridge"] == (tarfile.REGTYPE, 0o755)
    assert modes["cri-o/etc/crio/crio.conf"] == (tarfile.REGTYPE, 0o644)
    assert modes["cri-o/install"] == (tarfile.REGTYPE, 0o755)
    assert modes["cri-o/bin"] == (tarfile.DIRTYPE, 0o755)
    assert modes["cri-o/systemd/cri-o.service"][0] == tarfile.SYMTYPE


def test_gzip_header_has_no_name_and_no_time(world) -> None:
    raw = built(world).read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08"
    assert raw[3] == 0  # no FNAME, no FEXTRA, no comment
    assert raw[4:8] == b"\0\0\0\0"  # MTIME


def test_two_builds_are_byte_identical_whatever_the_staging_mtimes(world) -> None:
    first = built(world).read_bytes()
    recipe, settings = world
    for path in (settings.artifacts / "crio-1.18" / "staging").rglob("*"):
        if not path.is_symlink():
            os.utime(path, (1, 1))
    tarball.tarball_path(recipe, settings).unlink()
    assert built(world).read_bytes() == first


def test_layout_follows_upstreams_bundle(world) -> None:
    with tarfile.open(built(world)) as tar:
        files = sorted(i.name.removeprefix("cri-o/") for i in tar if not i.isdir())
    assert files == sorted([
        "README.md", "install", "kernel_check.py",
        "bin/conmon", "bin/crictl", "bin/crio", "bin/crio-status", "bin/pinns",
        "cni-plugins/bridge", "cni-plugins/host-local", "cni-plugins/loopback",
        "etc/cni/net.d/10-crio-bridge.conf", "etc/cni/net.d/99-loopback.conf", "etc/crictl.yaml", "etc/crio/crio.conf",
        "etc/crio/crio.conf.d/10-crio.conf", "libexec/crio/runc", "share/man/man8/cri-o-runc.8",
        "etc/containers/policy.json", "etc/containers/registries.conf",
        "share/bash-completion/completions/crio", "share/man/man5/crio.conf.5", "share/man/man8/crio.8",
        "share/oci-umount/oci-umount.d/crio-umount.conf",
        "systemd/cri-o.service", "systemd/crio-shutdown.service", "systemd/crio-wipe.service", "systemd/crio.service",
    ])  # fmt: skip


def member_text(path: Path, name: str) -> str:
    with tarfile.open(path) as tar:
        return tar.extractfile(f"cri-o/{name}").read().decode()  # type: ignore[union-attr]


def test_kernel_check_ships_unchanged_and_install_and_readme_name_the_version(world) -> None:
    path = built(world)
    assert member_text(path, "kernel_check.py") == (Path(tarball.__file__).with_name("kernel_check.py")).read_text()
    install = member_text(path, "install")
    assert "CRI-O 1.18.1" in install and not re.search(r"@[A-Z_]+@", install)
    readme = member_text(path, "README.md")
    assert "CRI-O 1.18.1" in readme and "conmon 2.0.19" in readme and not re.search(r"@[A-Z_]+@", readme)


def test_crio_conf_and_units_point_at_the_tarballs_paths(world) -> None:
    path = built(world)
    conf = member_text(path, "etc/crio/crio.conf")
    assert 'conmon = "/usr/local/bin/conmon"' in conf
    assert 'plugin_dirs = [\n\t"/opt/cni/bin",\n]' in conf
    assert "/usr/lib/cni" not in conf
    unit = member_text(path, "systemd/crio.service")
    assert "ExecStart=/usr/local/bin/crio \\\n          $CRIO_CONFIG_OPTIONS" in unit
    assert "ExecReload=/bin/kill -s HUP $MAINPID" in unit
    assert member_text(path, "systemd/crio-shutdown.service") == SHUTDOWN_SERVICE


def test_a_staged_policy_wins_over_the_default(world) -> None:
    recipe, settings = world
    staging = settings.artifacts / "crio-1.18" / "staging"
    stage(staging, "cri-o", STAGED["cri-o"] | {"etc/containers/policy.json": '{"default": [{"type": "reject"}]}\n'})
    assert "reject" in member_text(built(world), "etc/containers/policy.json")


# --------------------------------------------------------------------------- the textual rewrites


def test_rewrite_crio_conf_touches_only_the_paths() -> None:
    out = cri_o.rewrite_crio_conf(CRIO_CONF, "/usr/local", "/opt/cni/bin")
    changed = [(a, b) for a, b in zip(CRIO_CONF.splitlines(), out.splitlines()) if a != b]
    assert changed[0] == ('conmon = "/usr/bin/conmon"', 'conmon = "/usr/local/bin/conmon"')
    assert '\t"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",' in out
    assert '# pinns_path = "/usr/bin/pinns"\npinns_path = ""' in out
    assert out.count("/opt/cni/bin") == 1
    assert out.endswith("]\n\n[crio.metrics]\n")


def test_rewrite_crio_conf_moves_a_named_pinns_and_takes_other_directories() -> None:
    conf = CRIO_CONF.replace('pinns_path = ""', 'pinns_path = "/usr/bin/pinns"')
    out = cri_o.rewrite_crio_conf(conf, prefix="/opt/crio", cnidir="/usr/lib/cni")
    assert 'pinns_path = "/opt/crio/bin/pinns"' in out
    assert 'conmon = "/opt/crio/bin/conmon"' in out
    assert 'plugin_dirs = [\n\t"/usr/lib/cni",\n]' in out


def test_rewrite_crio_conf_moves_the_runtimes_and_the_monitor_of_a_drop_in() -> None:
    out = cri_o.rewrite_crio_conf(DROP_IN, "/usr/local", "/opt/cni/bin")
    assert 'runtime_path = "/usr/local/libexec/crio/runc"' in out
    assert 'monitor_path = "/usr/local/bin/conmon"' in out
    assert 'runtime_root = "/run/runc"' in out and 'default_runtime = "runc"' in out
    assert 'plugin_dirs = [\n\t"/opt/cni/bin",\n]' in out


def test_rewrite_unit_moves_only_our_binaries() -> None:
    unit = "ExecStartPre=-/usr/bin/crio wipe\nExecStart=/usr/local/bin/crio\nExecStop=/usr/bin/rm -f /x\nExecStart=/usr/bin/crictl-other\n"
    out = tarball.rewrite_unit(unit, {"crio", "crictl"})
    assert out == "ExecStartPre=-/usr/local/bin/crio wipe\nExecStart=/usr/local/bin/crio\nExecStop=/usr/bin/rm -f /x\nExecStart=/usr/bin/crictl-other\n"


def test_sonames_reads_the_dynamic_section() -> None:
    assert "libc.so.6" in elf.sonames(Path("/bin/true").read_bytes())
    assert elf.sonames(Path("/sbin/ldconfig").read_bytes()) == []  # statically linked
    assert elf.sonames(b"#!/bin/sh\n") == []
    assert elf.needed_libraries(Path("/bin/true")) == elf.sonames(Path("/bin/true").read_bytes())


def test_readme_and_install_name_the_shared_libraries(world) -> None:
    path = built(world)
    assert "The binaries are linked against these\nshared libraries of the target: libc.so.6 (Debian packages: libc6)" in member_text(path, "README.md")
    assert 'LIBRARIES="libc.so.6"' in member_text(path, "install")


GLIB_PROGRAM = '#include <glib.h>\nint main(void) { return g_strcmp0("a", "a"); }\n'


def test_install_names_the_library_packages_the_build_recorded_such_as_trixies_t64_ones(world, tmp_path: Path) -> None:
    """conmon links glib: on trixie and noble armhf its package is libglib2.0-0t64, as dpkg in the builder said."""
    recipe, settings = world
    (tmp_path / "conmon.c").write_text(GLIB_PROGRAM)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "glib-2.0"], capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["gcc", str(tmp_path / "conmon.c"), "-o", str(tmp_path / "conmon"), *flags], check=True)
    staging = settings.artifacts / "crio-1.18" / "staging"
    libraries = [{"soname": s, "package": p, "version": "2.84.4-3~deb13u1", "arch": "armhf"}
                 for s, p in (("libglib-2.0.so.0", "libglib2.0-0t64"), ("libc.so.6", "libc6"))]  # fmt: skip
    stage(staging, "conmon", {"usr/bin/conmon": "elf"}, libraries=libraries)
    shutil.copy(tmp_path / "conmon", staging / "conmon/usr/bin/conmon")
    path = built(world)
    install = member_text(path, "install")
    assert "  sudo apt-get install libc6 libglib2.0-0t64" in install and "libglib2.0-0 " not in install
    assert re.search(r'^LIBRARIES=".*\blibglib-2\.0\.so\.0\b', install, re.M)
    assert "(Debian packages: libc6 libglib2.0-0t64)" in member_text(path, "README.md")


# --------------------------------------------------------------------------- refusals


def test_a_file_outside_the_known_sections_is_refused(world) -> None:
    recipe, settings = world
    stage(settings.artifacts / "crio-1.18" / "staging", "conmon", {"usr/bin/conmon": "elf", "opt/conmon/conmon": "elf"})
    with pytest.raises(PackageError, match="opt/conmon/conmon has no place in the tarball"):
        tarball.make_tarball(recipe, settings)


def test_a_binary_for_another_architecture_is_refused(world) -> None:
    recipe, settings = world
    other = next(a for a in type(ARCH) if a != ARCH)
    from dataclasses import replace

    foreign = replace(recipe, target=replace(recipe.target, arch=other))
    with pytest.raises(PackageError, match=f"is not an {other} ELF: its ELF machine is"):
        tarball.tarball_members(foreign, settings)


def test_staging_of_another_commit_is_refused(world) -> None:
    recipe, settings = world
    stage(settings.artifacts / "crio-1.18" / "staging", "cri-tools", STAGED["cri-tools"], commit="5" * 40)
    with pytest.raises(PackageError, match=r"staged cri-tools is commit 5{40} and \S*crio-1\.18\.toml pins 4{40}"):
        tarball.make_tarball(recipe, settings)


def test_a_missing_component_is_refused_with_the_task_to_run(world) -> None:
    recipe, settings = world
    (settings.artifacts / "crio-1.18" / "staging" / "conmon.json").unlink()
    with pytest.raises(PackageError, match="doit compile:crio-1.18:conmon"):
        tarball.make_tarball(recipe, settings)
    assert not tarball.tarball_path(recipe, settings).exists()


# --------------------------------------------------------------------------- SHA256SUMS and manifest.json


def fake_images(names: list[str]) -> dict:
    return {n: {"name": n, "id": "sha256:" + hashlib.sha256(n.encode()).hexdigest(), "repo_digests": []} for n in names}


def test_manifest_says_what_went_in(world) -> None:
    recipe, settings = world
    path = built(world)
    (path.parent / "cri-o_1.18.1-1~deb12_amd64.deb").write_bytes(b"not really a deb")
    tarball.write_sums_and_manifest(recipe, settings, lookup_images=fake_images)
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["recipe"]["name"] == "crio-1.18"
    assert manifest["recipe"]["sha256"] == hashlib.sha256(recipe.path.read_bytes()).hexdigest()
    for c in COMPONENTS:
        assert manifest["components"][c]["commit"] == COMMITS[c]
        assert manifest["components"][c]["tag"] == f"v{VERSIONS[c]}"
        assert manifest["components"][c]["repo"] == f"https://example.invalid/{c}"
    assert manifest["go"] == [{"version": "1.14.15", "arch": str(ARCH), "tarball": f"go1.14.15.linux-{ARCH}.tar.gz", "sha256": "a" * 64, "components": list(COMPONENTS)}]
    assert manifest["builder_image"]["name"] == "criobuild/builder:test"
    assert manifest["builder_image"]["id"].startswith("sha256:")
    assert manifest["base_image"]["name"] == f"criobuild/base:debian-bookworm-{ARCH}"
    assert manifest["mode"] == "native"
    assert manifest["source_date_epoch"] == EPOCH
    assert [a["name"] for a in manifest["artifacts"]] == [path.name, f"{path.name}.spdx.json", "cri-o_1.18.1-1~deb12_amd64.deb"]  # sorted by name
    assert manifest["artifacts"][0] == {"name": path.name, "size": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    members = {m["path"]: m for m in manifest["tarball"]["members"]}
    assert members["bin/crio"]["mode"] == "0755" and members["systemd/cri-o.service"]["link"] == "crio.service"
    files = manifest["tarball"]["install"]["files"]
    assert "/usr/local/bin/crio" in files and "/opt/cni/bin/bridge" in files and "/etc/crio/crio.conf" in files
    assert "/usr/local/lib/systemd/system/crio.service" in files and "/usr/local/share/man/man8/crio.8" in files
    assert "/usr/local/share/cri-o/installed-files" in files
    assert not any("kernel_check" in f or "README" in f or f.endswith("/install") for f in files)
    assert members["bin/crio"]["needs"] == ["libc.so.6"]
    assert manifest["tarball"]["runtime"] == {"libraries": ["libc.so.6"], "debian_packages": ["libc6"]}


def test_sha256sums_checks_with_sha256sum_and_is_stable(world) -> None:
    recipe, settings = world
    path = built(world)
    tarball.write_sums_and_manifest(recipe, settings, lookup_images=fake_images)
    sums = (path.parent / "SHA256SUMS").read_text()
    assert [line.split()[1] for line in sums.splitlines()] == [path.name, f"{path.name}.spdx.json", "manifest.json", "provenance.intoto.json"]
    subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=path.parent, check=True, capture_output=True)
    path.unlink()
    tarball.make_tarball(recipe, settings)
    tarball.write_sums_and_manifest(recipe, settings, lookup_images=fake_images)
    assert (path.parent / "SHA256SUMS").read_text() == sums


def test_sums_without_artifacts_is_a_user_error(world) -> None:
    recipe, settings = world
    with pytest.raises(PackageError, match="has no .deb or .tar.gz"):
        tarball.write_sums_and_manifest(recipe, settings, lookup_images=fake_images)


def test_without_a_recorded_source_date_epoch_the_tarball_cannot_be_dated(world) -> None:
    recipe, settings = world
    staging = settings.artifacts / "crio-1.18" / "staging"
    data = json.loads((staging / "cri-o.json").read_text())
    del data["source_date_epoch"]
    (staging / "cri-o.json").write_text(json.dumps(data))
    with pytest.raises(PackageError, match="no source_date_epoch"):
        tarball.source_date_epoch(recipe, settings)


# --------------------------------------------------------------------------- the install script (run here, with this host's sh)


def unpack(world, tmp_path: Path) -> Path:
    with tarfile.open(built(world)) as tar:
        tar.extractall(tmp_path / "unpacked", filter="tar")
    return tmp_path / "unpacked" / "cri-o"


def install(bundle: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"} | env
    return subprocess.run(["sh", str(bundle / "install"), *args], env=clean, capture_output=True, text=True, cwd="/")


def tree(root: Path, mtimes: bool = True) -> dict[str, tuple]:
    """Every path under root with its type, mode, content hash or link target, and mtime (directories' too)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = "/" + path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = ("l", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("d", oct(st.st_mode & 0o7777), st.st_mtime_ns if mtimes else None)
        else:
            out[rel] = ("f", oct(st.st_mode & 0o7777), hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns if mtimes else None)
    return out


def manifest_files(world) -> list[str]:
    recipe, settings = world
    return tarball.installed_files([m["path"] for m in tarball.tarball_contents(tarball.tarball_path(recipe, settings))])


def test_install_puts_exactly_the_manifests_files_and_twice_changes_nothing(world, tmp_path: Path) -> None:
    bundle = unpack(world, tmp_path)
    root = tmp_path / "root"
    result = install(bundle, DESTDIR=str(root))
    assert result.returncode == 0, result.stderr
    assert "systemctl daemon-reload" in result.stdout and "enable --now crio" in result.stdout
    first = tree(root)
    assert sorted(p for p, t in first.items() if t[0] != "d") == manifest_files(world)
    assert first["/usr/local/bin/crio"][1] == "0o755" and first["/etc/crio/crio.conf"][1] == "0o644"
    assert first["/usr/local/lib/systemd/system/cri-o.service"] == ("l", "crio.service")
    record = (root / "usr/local/share/cri-o/installed-files").read_text().splitlines()
    assert [r for r in record if not r.endswith("/")] == manifest_files(world)
    assert "/opt/cni/" in record and "/usr/local/" in record
    assert (root / "etc/crio/crio.conf").read_bytes() == (bundle / "etc/crio/crio.conf").read_bytes()
    result = install(bundle, DESTDIR=str(root))
    assert result.returncode == 0, result.stderr
    assert tree(root) == first  # content, modes and even mtimes


def test_uninstall_removes_exactly_what_install_put_there(world, tmp_path: Path) -> None:
    bundle = unpack(world, tmp_path)
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/runc").write_text("theirs")
    (root / "etc/containers").mkdir(parents=True)
    (root / "etc/containers/policy.json").write_text("{}")
    before = tree(root, mtimes=False)  # the directories' mtimes cannot come back
    result = install(bundle, DESTDIR=str(root))
    assert result.returncode == 0, result.stderr
    assert "/etc/containers/policy.json (was there before" in result.stdout
    assert (root / "etc/containers/policy.json").read_text() == "{}"
    assert "/etc/containers/policy.json" not in (root / "usr/local/share/cri-o/installed-files").read_text()
    result = install(bundle, "--uninstall", DESTDIR=str(root))
    assert result.returncode == 0, result.stderr
    assert tree(root, mtimes=False) == before


def test_a_changed_configuration_survives_reinstall_and_uninstall(world, tmp_path: Path) -> None:
    bundle = unpack(world, tmp_path)
    root = tmp_path / "root"
    assert install(bundle, DESTDIR=str(root)).returncode == 0
    (root / "etc/crictl.yaml").write_text("runtime-endpoint: unix:///run/mine.sock\n")
    result = install(bundle, DESTDIR=str(root))
    assert "/etc/crictl.yaml (changed since it was installed" in result.stdout
    assert (root / "etc/crictl.yaml").read_text() == "runtime-endpoint: unix:///run/mine.sock\n"
    result = install(bundle, "--uninstall", DESTDIR=str(root))
    assert result.returncode == 0, result.stderr
    left = sorted(p for p, t in tree(root).items() if t[0] != "d")
    assert left == ["/etc/crictl.yaml"]


def test_install_with_another_prefix_and_cnidir_rewrites_the_paths(world, tmp_path: Path) -> None:
    bundle = unpack(world, tmp_path)
    root = tmp_path / "root"
    result = install(bundle, "PREFIX=/usr", f"DESTDIR={root}", CNIDIR="/usr/lib/cni")
    assert result.returncode == 0, result.stderr
    unit = (root / "usr/lib/systemd/system/crio.service").read_text()
    assert "ExecStart=/usr/bin/crio \\" in unit
    assert (root / "usr/lib/systemd/system/crio-shutdown.service").read_text() == SHUTDOWN_SERVICE
    assert "ExecStart=/usr/bin/crio \\" in (root / "usr/lib/systemd/system/crio-wipe.service").read_text()
    conf = (root / "etc/crio/crio.conf").read_text()
    assert conf == cri_o.rewrite_crio_conf(CRIO_CONF, prefix="/usr", cnidir="/usr/lib/cni")
    drop_in = (root / "etc/crio/crio.conf.d/10-crio.conf").read_text()
    assert drop_in == cri_o.rewrite_crio_conf(DROP_IN, prefix="/usr", cnidir="/usr/lib/cni")
    assert (root / "usr/libexec/crio/runc").exists()
    assert (root / "usr/lib/cni/bridge").exists() and (root / "usr/bin/crictl").exists()
    assert (root / "usr/share/cri-o/installed-files").exists()
    result = install(bundle, "--uninstall", "PREFIX=/usr", f"DESTDIR={root}")
    assert result.returncode == 0, result.stderr
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["PREFIX=usr"], "PREFIX=usr is not an absolute directory"),
    (["CNIDIR=/opt/cni bin"], "has characters other than"),
    (["--frobnicate"], "unknown argument --frobnicate"),
    (["--uninstall"], "nothing to uninstall"),
])  # fmt: skip
def test_install_refuses_bad_settings(world, tmp_path: Path, args: list[str], message: str) -> None:
    result = install(unpack(world, tmp_path), *args, DESTDIR=str(tmp_path / "root"))
    assert result.returncode != 0
    assert message in result.stderr


def test_install_help_is_the_scripts_header(world, tmp_path: Path) -> None:
    result = install(unpack(world, tmp_path), "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Install CRI-O 1.18.1")
    assert "PREFIX=/usr/local" in result.stdout and "set -eu" not in result.stdout


def test_install_is_posix_sh(world, tmp_path: Path) -> None:
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed")
    subprocess.run(["shellcheck", "-s", "sh", str(unpack(world, tmp_path) / "install")], check=True)


def test_the_compression_is_plain_deflate_at_a_fixed_level(world) -> None:
    raw = built(world).read_bytes()
    assert gzip.compress(gzip.decompress(raw), compresslevel=tarball.GZIP_LEVEL, mtime=0)[10:] == raw[10:]
