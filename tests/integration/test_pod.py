"""The pod test against a real engine and real systemd, with the fixture packages built natively for trixie amd64.

The fixture crio cannot serve the CRI (only real CRI-O can, and its sources are out of our machines'
reach; the pod test of real releases is run by hand and in the release workflow). What runs here is
everything around it, for real: the pause program compiled static and the busybox image made from
Debian's busybox, pgrep and ipcs, the node installed by apt and booted with systemd as PID 1 without
--privileged, crio.service started by it, and the failure a user gets when crio does not answer on its
socket: crio's own words from its journal, and nothing left behind.
"""
from __future__ import annotations

import pytest

from tests.fixtures.pipeline import SHAPE_1_36, Pipeline, make_pipeline

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def pipeline_amd64(tmp_path_factory, upstreams, go_tarballs, http_server) -> Pipeline:
    shape = SHAPE_1_36 | {"suite": "trixie", "arch": "amd64"}
    pipeline = make_pipeline(tmp_path_factory.mktemp("pipeline-amd64"), "auto", upstreams, go_tarballs, http_server, shape)
    result = pipeline.doit("build:crio-1.36")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return pipeline


def test_a_crio_that_does_not_answer_ends_the_pod_test_with_its_own_words_and_leaves_nothing(pipeline_amd64: Pipeline, docker_engine) -> None:
    volumes_before = {v.name for v in docker_engine.volumes.list()}
    earlier = [pipeline_amd64.artifacts / "pod-report.json", pipeline_amd64.artifacts / "pod-report.json.asc"]
    for path in earlier:  # an earlier run's report on these packages: a failing run takes it away
        path.write_text("{}\n")
    result = pipeline_amd64.doit("pod:crio-1.36")
    assert result.returncode != 0
    assert "pod test of crio-1.36: crio does not answer on its socket; its journal says:" in result.stderr
    assert "this is the cri-o test fixture: it has no daemon" in result.stderr  # what the fixture crio said under systemd
    log = (pipeline_amd64.artifacts / "logs" / "pod.log").read_text()
    assert "gcc -static -Os -s -o /out/pause/pause /src/pause.c" in log  # the pause image, made here
    assert "for applet in $(busybox --list)" in log and "chroot /out/busybox /bin/sh -c 'ls -d /tmp && pgrep --version && ipcs -V'" in log
    assert "systemd: running" in log or "systemd: degraded" in log  # the node booted with systemd as PID 1
    owner = str(pipeline_amd64.artifacts)
    assert docker_engine.containers.list(all=True, filters={"label": f"io.criobuild={owner}"}) == []
    assert docker_engine.images.list(filters={"label": f"io.criobuild={owner}"}) == []
    assert {v.name for v in docker_engine.volumes.list()} <= volumes_before  # the node's storage volume went with it
    assert not any(path.exists() for path in earlier)


def test_the_stand_in_busybox_image_runs_what_critest_runs_and_its_sh_executes_a_masked_ls(docker_engine, tmp_path) -> None:
    """critest's HostIpc (ipcs -m), HostPID (pgrep) and MaskedPaths (/bin/sh -c ls with /bin/ls masked) specs,
    as docker runs the image: the masking is a bind of /dev/null, as runc and crun mask a file."""
    from dataclasses import replace

    from builders.arch import host_arch
    from builders.images import ensure_base_image
    from builders.pod import make_images
    from tests.fixtures.images import TEST_TARGET

    base = ensure_base_image(docker_engine, replace(TEST_TARGET, suite="trixie", arch=host_arch()), "bootstrap")
    owner = f"criobuild-test-{tmp_path.name}"
    make_images(docker_engine, base, host_arch(), tmp_path / "images", "the stand-in image", owner)
    image = docker_engine.images.load((tmp_path / "images" / "busybox.tar").read_bytes())[0]
    try:
        assert image.attrs["Architecture"] == host_arch().to_oci().split("/")[1]  # the target's platform, named in its config
        def run(command: str, **options) -> tuple[int, str]:
            box = docker_engine.containers.run(image.id, entrypoint=["/bin/sh", "-c", command], detach=True, network_mode="none", **options)
            try:
                status = box.wait()["StatusCode"]
                return status, box.logs(stdout=True, stderr=True).decode()
            finally:
                box.remove(force=True)

        assert run("ipcs -m")[0] == 0 and "Shared Memory Segments" in run("ipcs -m")[1]
        status, said = run("sleep 30 & sleep 1; pgrep -x sleep")  # a moment for the background sh to exec sleep
        assert status == 0 and said.strip().isdigit(), said
        assert run("ls /bin")[1].split().count("busybox") == 1
        masked = run("ls", volumes={"/dev/null": {"bind": "/bin/ls", "mode": "ro"}})
        assert masked[0] != 0 and masked[1] == "/bin/sh: ls: Permission denied\n"  # critest's MaskedPaths spec wants exactly this line
    finally:
        docker_engine.images.remove(image.id, force=True)
