"""The pinned toolchain, fetched over HTTP into the cache, runs read-only inside an emulated arm64 container."""
from __future__ import annotations

import pytest

from builders.arch import Arch
from builders.go_toolchain import ensure_go
from builders.settings import load_settings

pytestmark = [pytest.mark.docker, pytest.mark.emulation]


def test_go_version_inside_an_arm64_container(go_tarballs, http_clean, tmp_path, monkeypatch, docker_engine, arm64_base_image):
    root, url = http_clean.subdir("in-container")
    name = go_tarballs.filename(Arch.arm64)
    (root / name).unlink(missing_ok=True)
    (root / name).symlink_to(go_tarballs.path[Arch.arm64])
    monkeypatch.setenv("CRIOBUILD_GO_MIRROR", url)
    monkeypatch.setenv("CRIOBUILD_CACHE", str(tmp_path / "cache"))

    goroot = ensure_go(go_tarballs.toolchain(), Arch.arm64, load_settings())

    # no platform= here: an image imported from an mmdebstrap rootfs may be labelled with the host's
    # architecture; binfmt runs its arm64 binaries anyway, and `go version` below proves the architecture
    container = docker_engine.containers.create(
        arm64_base_image,
        ["/usr/local/go/bin/go", "version"],
        environment={"PATH": "/usr/local/go/bin:/usr/bin:/bin", "HOME": "/tmp"},
        volumes={str(goroot): {"bind": "/usr/local/go", "mode": "ro"}},
    )
    try:
        container.start()
        status = container.wait(timeout=300)
        output = container.logs(stdout=True, stderr=True).decode().strip()
    finally:
        container.remove(force=True)

    print(output)
    assert status["StatusCode"] == 0, output
    assert output == f"go version go{go_tarballs.version} linux/arm64"
    assert http_clean.count(f"in-container/{name}") == 1
