"""Pinned Go toolchains over real HTTP: download, verify, cache, and every way it can go wrong."""
from __future__ import annotations

import hashlib
import io
import multiprocessing
import subprocess
import tarfile
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from doit.exceptions import TaskFailed

from builders.arch import Arch, host_arch
from builders.download import download, http_timeout
from builders.files import sha256_file
from builders.errors import BuildError, ChecksumError, DownloadError, RecipeError
from builders.go_toolchain import (
    MARKER, UnsafeArchiveError, completion_marker, describe_mirror, ensure_go, go_task, go_url,
    toolchain_dir,
)
from builders.recipe import GoToolchain
from builders.settings import Settings, load_settings

FAKE_VERSION = "1.99.1"
ELF_MACHINE = {Arch.arm64: 0xB7, Arch.amd64: 0x3E}


def settings_for(tmp_path: Path, mirror: str | None) -> Settings:
    env = {"CRIOBUILD_CACHE": str(tmp_path / "cache"), "CRIOBUILD_ARTIFACTS": str(tmp_path / "artifacts")}
    return load_settings(env | ({"CRIOBUILD_GO_MIRROR": mirror} if mirror else {}))


def fake_elf(arch: Arch) -> bytes:
    header = b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + ELF_MACHINE[arch].to_bytes(2, "little")
    return header + bytes(200)


def add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1672531200
    tar.addfile(info, io.BytesIO(data))


def add_link(tar: tarfile.TarFile, name: str, target: str, kind: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


def fake_go_tarball(path: Path, arch: Arch = Arch.arm64, version: str = FAKE_VERSION, extra=None) -> str:
    """A small go/ tree (VERSION, an ELF header for bin/go, a source file) plus extra members; returns its sha256."""
    with tarfile.open(path, "w:gz") as tar:
        add_file(tar, "go/VERSION", f"go{version}\ntime 2023-01-01T00:00:00Z\n".encode())
        add_file(tar, "go/bin/go", fake_elf(arch), 0o755)
        add_file(tar, "go/src/runtime/extern.go", b"package runtime\n")
        if extra:
            extra(tar)
    return sha256_file(path)


@pytest.fixture
def fake_mirror(http_clean, request):
    """A per-test directory on the local server holding a fake arm64 toolchain, and its recipe pin."""
    root, url = http_clean.subdir(request.node.name.replace("[", "_").replace("]", "_"))
    sha = fake_go_tarball(root / f"go{FAKE_VERSION}.linux-arm64.tar.gz")
    return http_clean, root, url, GoToolchain(version=FAKE_VERSION, sha256={Arch.arm64: sha})


def leftovers(settings: Settings) -> list[str]:
    """Everything in the toolchain cache except lock files."""
    if not settings.toolchains.exists():
        return []
    return sorted(p.name for p in settings.toolchains.iterdir() if not p.name.endswith(".lock"))


# -- names and urls ------------------------------------------------------------------------------------


def test_url_is_official_unless_a_mirror_is_set():
    go = GoToolchain(version="1.14.15", sha256={})
    assert go_url(go, Arch.arm64, None) == "https://go.dev/dl/go1.14.15.linux-arm64.tar.gz"
    assert go_url(go, Arch.amd64, "http://mirror.lan/go/") == "http://mirror.lan/go/go1.14.15.linux-amd64.tar.gz"


def test_cache_layout_per_version_and_arch(tmp_path):
    go, settings = GoToolchain(version="1.14.15", sha256={}), settings_for(tmp_path, None)
    assert toolchain_dir(go, Arch.arm64, settings) == tmp_path / "cache/toolchains/go1.14.15.linux-arm64"
    assert completion_marker(go, Arch.amd64, settings) == tmp_path / f"cache/toolchains/go1.14.15.linux-amd64/{MARKER}"


def test_cross_builds_use_the_host_toolchain():
    from builders.modes import resolve_mode

    assert resolve_mode("cross", Arch.arm64).toolchain_arch(Arch.arm64) == host_arch()
    assert resolve_mode("qemu", Arch.arm64).toolchain_arch(Arch.arm64) == Arch.arm64
    assert resolve_mode("native", Arch.arm64).toolchain_arch(Arch.arm64) == Arch.arm64


def test_mirror_description_says_how_to_set_one():
    go = GoToolchain(version="1.14.15", sha256={})
    unset = describe_mirror(go, Arch.arm64, None)
    assert "CRIOBUILD_GO_MIRROR is unset" in unset and "<base>/go1.14.15.linux-arm64.tar.gz" in unset
    assert "CRIOBUILD_GO_MIRROR=http://m/" in describe_mirror(go, Arch.arm64, "http://m/")


def test_http_timeout_setting():
    assert http_timeout({}) == 60
    assert http_timeout({"CRIOBUILD_HTTP_TIMEOUT": "2.5"}) == 2.5
    with pytest.raises(BuildError, match="CRIOBUILD_HTTP_TIMEOUT='soon' is not a timeout"):
        http_timeout({"CRIOBUILD_HTTP_TIMEOUT": "soon"})


def test_an_unpinned_architecture_is_a_recipe_error(tmp_path):
    go = GoToolchain(version="1.14.15", sha256={Arch.arm64: "0" * 64})
    with pytest.raises(RecipeError, match=r"no key 'go.sha256.amd64'"):
        ensure_go(go, Arch.amd64, settings_for(tmp_path, "http://127.0.0.1:9"))


# -- the real toolchains -------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", [Arch.arm64, Arch.armhf, Arch.amd64])
def test_real_toolchain_downloads_once_then_works_offline(go_tarballs, http_clean, tmp_path, closed_port_url, arch):
    root, url = http_clean.subdir(f"real-{arch}")
    name = go_tarballs.filename(arch)
    (root / name).unlink(missing_ok=True)
    (root / name).symlink_to(go_tarballs.path[arch])
    go = go_tarballs.toolchain()

    goroot = ensure_go(go, arch, settings_for(tmp_path, url))

    assert goroot == toolchain_dir(go, arch, settings_for(tmp_path, url)) / "go"
    assert (goroot / "VERSION").read_text().startswith(f"go{go_tarballs.version}")
    assert (goroot / "src/runtime").is_dir() and (goroot / "pkg/tool").is_dir()
    assert (goroot.parent / MARKER).is_file()
    assert http_clean.count(f"real-{arch}/{name}") == 1
    assert leftovers(settings_for(tmp_path, url)) == [goroot.parent.name]  # the tarball is gone, no .part

    # second run: finds it complete, asks nobody (a dead mirror proves it)
    assert ensure_go(go, arch, settings_for(tmp_path, closed_port_url)) == goroot
    assert http_clean.count() == 1

    if arch == host_arch():
        out = subprocess.run([str(goroot / "bin/go"), "version"], capture_output=True, text=True, check=True).stdout
        assert out.strip() == f"go version go{go_tarballs.version} linux/{arch}"


def test_go_task_runs_ensure_go_and_targets_the_marker(fake_mirror, tmp_path):
    server, root, url, go = fake_mirror
    settings = settings_for(tmp_path, url)

    task = go_task(go, Arch.arm64, settings)

    assert task["name"] == f"{FAKE_VERSION}-arm64" and task["doc"]
    assert task["targets"] == [str(completion_marker(go, Arch.arm64, settings))]
    assert len(task["uptodate"]) == 1
    ((action, args),) = task["actions"]
    assert action(*args) is None  # success for doit (a returned Path would be a failure)
    assert completion_marker(go, Arch.arm64, settings).is_file()
    assert "downloading" in Path(task["meta"]["log"]).read_text(), "the step's output is in its log"


def test_go_task_fails_cleanly_on_user_errors(tmp_path, closed_port_url):
    go = GoToolchain(version=FAKE_VERSION, sha256={Arch.arm64: "0" * 64})
    ((action, args),) = go_task(go, Arch.arm64, settings_for(tmp_path, closed_port_url))["actions"]
    result = action(*args)
    assert isinstance(result, TaskFailed)
    assert "connection was refused" in result.message


# -- bad input: each leaves nothing half-made ------------------------------------------------------------


def test_checksum_mismatch_names_file_both_sums_and_mirror(fake_mirror, tmp_path):
    server, root, url, go = fake_mirror
    wrong = GoToolchain(version=go.version, sha256={Arch.arm64: "ab" * 32})
    settings = settings_for(tmp_path, url)

    with pytest.raises(ChecksumError) as caught:
        ensure_go(wrong, Arch.arm64, settings)

    text = str(caught.value)
    assert go.tarball(Arch.arm64) in text
    assert f"expected {'ab' * 32}, got {go.sha256[Arch.arm64]}" in text
    assert f"CRIOBUILD_GO_MIRROR={url}" in text
    assert leftovers(settings) == []


def test_404_names_the_url_and_how_to_set_a_mirror(fake_mirror, tmp_path):
    server, root, url, go = fake_mirror
    server.make_missing(f"{url.rsplit('/', 1)[-1]}/{go.tarball(Arch.arm64)}")
    settings = settings_for(tmp_path, url)

    with pytest.raises(DownloadError) as caught:
        ensure_go(go, Arch.arm64, settings)

    text = str(caught.value)
    assert f"download of {go_url(go, Arch.arm64, url)} failed because the server answered 404" in text
    assert "point CRIOBUILD_GO_MIRROR at another base URL" in text
    assert leftovers(settings) == []


def test_refused_connection_names_the_url_and_how_to_set_a_mirror(fake_mirror, tmp_path, closed_port_url):
    go = fake_mirror[3]
    settings = settings_for(tmp_path, closed_port_url)

    with pytest.raises(DownloadError) as caught:
        ensure_go(go, Arch.arm64, settings)

    text = str(caught.value)
    assert f"download of {closed_port_url}/{go.tarball(Arch.arm64)} failed because the connection was refused" in text
    assert "CRIOBUILD_GO_MIRROR" in text and "<base>/" in text
    assert leftovers(settings) == []


def test_timeout_names_the_url_and_the_limit(fake_mirror, tmp_path, monkeypatch):
    server, root, url, go = fake_mirror
    server.make_slow(f"{url.rsplit('/', 1)[-1]}/{go.tarball(Arch.arm64)}", 2.0)
    monkeypatch.setenv("CRIOBUILD_HTTP_TIMEOUT", "0.3")
    settings = settings_for(tmp_path, url)

    with pytest.raises(DownloadError) as caught:
        ensure_go(go, Arch.arm64, settings)

    text = str(caught.value)
    assert f"download of {go_url(go, Arch.arm64, url)} failed because the server did not answer within 0.3 s" in text
    assert "CRIOBUILD_GO_MIRROR" in text
    assert leftovers(settings) == []


def test_truncated_download_is_never_taken_and_the_next_run_succeeds(fake_mirror, tmp_path):
    server, root, url, go = fake_mirror
    path = f"{url.rsplit('/', 1)[-1]}/{go.tarball(Arch.arm64)}"
    server.make_truncated(path)
    settings = settings_for(tmp_path, url)

    with pytest.raises(DownloadError, match=r"failed because the (connection closed|body ended) after \d+ of \d+ bytes"):
        ensure_go(go, Arch.arm64, settings)
    assert leftovers(settings) == []

    server.truncated.clear()
    goroot = ensure_go(go, Arch.arm64, settings)
    assert (goroot / "bin/go").read_bytes() == fake_elf(Arch.arm64)
    assert server.count(path) == 2


def test_a_killed_run_leaves_nothing_that_passes_for_done(fake_mirror, tmp_path):
    server, root, url, go = fake_mirror
    settings = settings_for(tmp_path, url)
    target = toolchain_dir(go, Arch.arm64, settings)
    # what a SIGKILL at each stage leaves: a partial download, a partial unpacking, an unmarked tree
    (target / "go/bin").mkdir(parents=True)
    (target / "go/bin/go").write_bytes(b"half")
    (settings.toolchains / f".{go.tarball(Arch.arm64)}.x1y2.part").write_bytes(b"half")
    (settings.toolchains / f".{target.name}.z3.partial/go").mkdir(parents=True)

    goroot = ensure_go(go, Arch.arm64, settings)

    assert (goroot / "bin/go").read_bytes() == fake_elf(Arch.arm64)
    assert leftovers(settings) == [target.name]
    assert server.count() == 1


def test_a_verified_tarball_from_a_killed_run_is_reused_without_network(fake_mirror, tmp_path, closed_port_url):
    server, root, url, go = fake_mirror
    settings = settings_for(tmp_path, closed_port_url)
    settings.toolchains.mkdir(parents=True)
    (settings.toolchains / go.tarball(Arch.arm64)).write_bytes((root / go.tarball(Arch.arm64)).read_bytes())

    goroot = ensure_go(go, Arch.arm64, settings)

    assert (goroot / "VERSION").is_file() and leftovers(settings) == [goroot.parent.name]


def test_download_writes_only_verified_files(http_clean, tmp_path):
    root, url = http_clean.subdir("plain")
    (root / "blob").write_bytes(b"x" * 5000)
    dest = tmp_path / "out/blob"
    download(f"{url}/blob", dest, sha256=hashlib.sha256(b"x" * 5000).hexdigest(), describe_mirror="no mirror")
    assert dest.read_bytes() == b"x" * 5000
    with pytest.raises(ChecksumError, match="other downloaded from .* was rejected"):
        download(f"{url}/blob", tmp_path / "out/other", sha256="0" * 64, describe_mirror="no mirror")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob"]


@pytest.mark.parametrize("arch, version, message", [
    (Arch.amd64, FAKE_VERSION, "go/bin/go is not an ELF binary for arm64"),
    (Arch.arm64, "1.99.2", "go/VERSION says 'go1.99.2', not the pinned go1.99.1"),
])
def test_a_tarball_for_another_arch_or_version_is_rejected(http_clean, tmp_path, arch, version, message):
    root, url = http_clean.subdir(f"wrong-{arch}-{version}")
    go = GoToolchain(version=FAKE_VERSION, sha256={})
    sha = fake_go_tarball(root / go.tarball(Arch.arm64), arch=arch, version=version)
    settings = settings_for(tmp_path, url)
    with pytest.raises(ChecksumError, match=message):
        ensure_go(GoToolchain(version=FAKE_VERSION, sha256={Arch.arm64: sha}), Arch.arm64, settings)
    assert leftovers(settings) == []


ESCAPES = {
    "dotdot": (lambda t: add_file(t, "go/../../escaped", b"x"), "go/../../escaped", "'..' component"),
    "absolute": (lambda t: add_file(t, "/tmp/criobuild-escaped", b"x"), "/tmp/criobuild-escaped", "absolute path"),
    "symlink-absolute": (lambda t: add_link(t, "go/evil", "/etc", tarfile.SYMTYPE), "go/evil", "symlink to the absolute path '/etc'"),
    "symlink-up": (lambda t: add_link(t, "go/pkg/evil", "../../../escaped", tarfile.SYMTYPE), "go/pkg/evil", "symlink to '../../../escaped', which is outside"),
    "hardlink-up": (lambda t: add_link(t, "go/evil", "../escaped", tarfile.LNKTYPE), "go/evil", "hard link to '../escaped'"),
    "hardlink-absolute": (lambda t: add_link(t, "go/evil", "/etc/passwd", tarfile.LNKTYPE), "go/evil", "hard link to the absolute path"),
    # each link stays inside on paper; followed through the first, the second leaves: tarfile's data filter catches it
    "symlink-chain": (
        lambda t: (add_link(t, "go/sub/up", "../..", tarfile.SYMTYPE), add_link(t, "go/out", "sub/up/..", tarfile.SYMTYPE)),
        "go/out", "data filter",
    ),
    "device": (lambda t: add_link(t, "go/dev", "", tarfile.CHRTYPE), "go/dev", "device or fifo"),
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_members_escaping_the_toolchain_dir_are_refused(http_clean, tmp_path, case):
    extra, member, why = ESCAPES[case]
    root, url = http_clean.subdir(f"escape-{case}")
    go = GoToolchain(version=FAKE_VERSION, sha256={})
    sha = fake_go_tarball(root / go.tarball(Arch.arm64), extra=extra)
    settings = settings_for(tmp_path, url)

    with pytest.raises(UnsafeArchiveError) as caught:
        ensure_go(GoToolchain(version=FAKE_VERSION, sha256={Arch.arm64: sha}), Arch.arm64, settings)

    assert f"its member {member!r}" in str(caught.value) and why in str(caught.value)
    assert leftovers(settings) == []
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "cache/escaped").exists()
    assert not Path("/tmp/criobuild-escaped").exists()


# -- two builds at once ------------------------------------------------------------------------------------


def test_concurrent_threads_download_once(fake_mirror, tmp_path):
    server, root, url, go = fake_mirror
    server.make_slow(f"{url.rsplit('/', 1)[-1]}/{go.tarball(Arch.arm64)}", 0.5)  # keep the first in flight
    settings = settings_for(tmp_path, url)
    results, errors = [], []

    def build() -> None:
        try:
            results.append(ensure_go(go, Arch.arm64, settings))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    assert len(set(results)) == 1 and (results[0] / "bin/go").read_bytes() == fake_elf(Arch.arm64)
    assert server.count() == 1
    assert leftovers(settings) == [results[0].parent.name]


def test_concurrent_processes_download_once(fake_mirror, tmp_path):
    server, root, url, go = fake_mirror
    server.make_slow(f"{url.rsplit('/', 1)[-1]}/{go.tarball(Arch.arm64)}", 1.0)
    settings = settings_for(tmp_path, url)

    with ProcessPoolExecutor(max_workers=3, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(ensure_go, [go] * 3, [Arch.arm64] * 3, [settings] * 3))

    assert len(set(results)) == 1 and (results[0] / "VERSION").is_file()
    assert server.count() == 1


def test_two_tarballs_of_one_go_version_get_two_volumes() -> None:
    from builders.volumes import go_volume_name

    goroot = Path("/cache/toolchains/go1.19.8.linux-amd64/go")
    names = {go_volume_name(goroot, "26acb521f3d0" + "0" * 52), go_volume_name(goroot, "f88e63c7aa11" + "0" * 52)}
    assert names == {"criobuild-go1.19.8.linux-amd64-26acb521f3d0", "criobuild-go1.19.8.linux-amd64-f88e63c7aa11"}
