"""The pod test's parts that need no node: what it refuses, how it boots, what it reads back."""
from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

import pytest

from builders import pod
from builders.arch import Arch, host_arch
from builders.errors import ContainerError
from builders.recipe import for_every_target, load_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPE = load_recipe(REPO / "recipes" / "crio-1.36.toml")

# A docker container's /proc/self/mountinfo on a cgroup v1 host (ours) and on a cgroup v2 host (GitHub's runners).
MOUNTINFO_V1 = """\
161 160 0:69 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,size=4096k,mode=755
162 161 0:29 / /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
165 161 0:32 / /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:9 - cgroup cgroup rw,memory
170 161 0:37 / /sys/fs/cgroup/systemd ro,nosuid,nodev,noexec,relatime - cgroup systemd rw,name=systemd
77 161 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
60 59 0:40 / /run rw,nosuid,nodev - tmpfs tmpfs rw
"""
MOUNTINFO_V2 = """\
59 58 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate
60 55 0:40 / /tmp rw,nosuid,nodev - tmpfs tmpfs rw
"""


@pytest.mark.parametrize("mountinfo, expected", [
    (MOUNTINFO_V1, ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"]),
    (MOUNTINFO_V2, ["/sys/fs/cgroup"]),
])  # fmt: skip
def test_the_boot_remounts_every_cgroup_hierarchy_and_nothing_else(tmp_path: Path, mountinfo: str, expected: list[str]) -> None:
    (tmp_path / "mountinfo").write_text(mountinfo)
    out = subprocess.run(["sh", "-c", f"{pod.CGROUP_MOUNTS} {tmp_path / 'mountinfo'}"], capture_output=True, text=True, check=True).stdout
    assert out.split() == expected
    assert pod.BOOT.endswith("exec /sbin/init")


def test_a_foreign_target_is_refused_with_the_native_command_to_run_instead() -> None:
    foreign = next(r for r in for_every_target(RECIPE) if r.target.arch != host_arch())
    with pytest.raises(ContainerError) as error:
        pod.check_native(foreign)
    assert "QEMU user emulation cannot create the namespaces" in str(error.value)
    if host_arch() == Arch.amd64:
        assert "`doit build:crio-1.36@trixie-amd64 pod:crio-1.36@trixie-amd64`" in error.value.hint


def test_the_hosts_own_target_is_accepted() -> None:
    native = next(r for r in for_every_target(RECIPE) if r.target.arch == host_arch())
    pod.check_native(native)


def test_the_pod_test_runs_on_summed_packages(tmp_path: Path) -> None:
    from builders.settings import load_settings

    native = next(r for r in for_every_target(RECIPE) if r.target.arch == host_arch())
    task = pod.pod_task(native, load_settings({"CRIOBUILD_ARTIFACTS": str(tmp_path)}))
    assert task["task_dep"] == [f"sums:{native.name}"]  # a .deb rebuilt for it is in SHA256SUMS before the report names it
    assert len(task["file_dep"]) == len(native.components)  # and each of its .debs


def test_what_a_pod_leaves_mounted_is_told_apart_from_the_node() -> None:
    mountinfo = MOUNTINFO_V1 + (
        "300 60 0:50 / /run/netns/a3c1 rw shared:5 - nsfs nsfs rw\n"
        "301 60 0:51 / /run/containers/storage/overlay-containers/4f2e/userdata/shm rw - tmpfs shm rw\n"
        "302 60 0:52 / /var/lib/containers/storage/overlay/9d1b/merged rw - overlay overlay rw\n"
        "303 60 0:53 / /run/lock rw - tmpfs tmpfs rw\n"
    )
    assert pod.mounts_of_pods(mountinfo) == {
        "/run/netns/a3c1", "/run/containers/storage/overlay-containers/4f2e/userdata/shm", "/var/lib/containers/storage/overlay/9d1b/merged",
    }  # fmt: skip


@pytest.mark.parametrize("config", [
    {"cniVersion": "1.0.0", "name": "crio", "plugins": [{"type": "bridge", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.85.0.0/16"}]]}}]},
    {"cniVersion": "0.3.1", "name": "crio-bridge", "type": "bridge", "ipam": {"type": "host-local", "subnet": "10.88.0.0/16"}},
])  # fmt: skip
def test_the_bridge_subnet_is_read_from_a_conflist_and_from_an_old_conf(config: dict) -> None:
    subnet = ipaddress.ip_network(config.get("plugins", [config])[0]["ipam"].get("subnet") or "10.85.0.0/16")
    assert pod.subnet_of(json.dumps(config)) == subnet
    assert pod.pod_ip(json.dumps({"status": {"network": {"ip": str(subnet[5])}}})) in subnet


def test_the_pod_uses_the_recipes_pause_image_only_through_crio_and_local_images_for_its_containers() -> None:
    files = pod.pod_files("systemd")
    assert {c["image"]["image"] for n, c in files.items() if n != "pod.json"} == {pod.BUSYBOX}
    assert "httpd" in files["web.json"]["command"][-1] and files["pod.json"]["metadata"]["uid"]
    assert f"echo '{pod.WEB_SAYS}'" in files["web.json"]["command"][-1]


def test_each_run_is_a_pod_of_its_own_with_its_own_log_directory() -> None:
    pods = [pod.pod_files(run)["pod.json"] for run in ("systemd", "cgroupfs", "systemd")]
    uids = [p["metadata"]["uid"] for p in pods]
    assert len(set(uids)) == 3  # a run again with the same cgroup manager is still another pod
    assert [p["log_directory"] for p in pods] == [f"/tmp/criobuild-pods/{uid}" for uid in uids]
    assert [p["metadata"]["name"] for p in pods] == ["criobuild-systemd", "criobuild-cgroupfs", "criobuild-systemd"]


@pytest.mark.parametrize("logs, ok", [
    (pod.WEB_SAYS, True),
    (f"{pod.WEB_SAYS}\n", True),
    (f"{pod.WEB_SAYS}\n{pod.WEB_SAYS}\n", False),  # a second line is another container's (what a shared log directory showed)
    ("", False),
    (f"not {pod.WEB_SAYS}", False),
])  # fmt: skip
def test_the_log_check_wants_the_web_containers_line_exactly_once(logs: str, ok: bool) -> None:
    assert pod.printed_once(logs, pod.WEB_SAYS) == ok


# Shaped as ginkgo v2 (critest 1.25+) and ginkgo v1 (before) write JUnit: v1 puts file:line in the message.
JUNIT_V2 = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5"><testsuite name="CRI validation" tests="5">
<testcase name="[BeforeSuite]" status="passed"></testcase>
<testcase name="[It] [k8s.io] PodSandbox runtime should support basic operations on PodSandbox" status="passed"></testcase>
<testcase name="[It] [k8s.io] Image Manager public image with tag should be pulled and removed" status="failed">
<failure message="failed to pull image: unable to pull image: initializing source docker://gcr.io/k8s-staging-cri-tools/test-image-tag:test: pinging container registry gcr.io: Get &quot;https://gcr.io/v2/&quot;: dial tcp: lookup gcr.io: no such host" type="failed"></failure></testcase>
<testcase name="[It] [k8s.io] Security Context runtime should support HostIpc" status="failed">
<failure message="failed to execSync in container &quot;0e26&quot;" type="failed">executable file `ipcs` not found in $PATH</failure></testcase>
<testcase name="[It] [k8s.io] Windows only" status="skipped"><skipped message="skipped"></skipped></testcase>
</testsuite></testsuites>"""
JUNIT_V1 = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="CRI validation" tests="2" failures="2" errors="0" time="12.5">
<testcase name="[k8s.io] Image Manager public image with tag should be pulled and removed [Conformance]" classname="CRI validation" time="0.1">
<failure type="Failure" message="github.com/kubernetes-sigs/cri-tools/pkg/framework/util.go:306">github.com/kubernetes-sigs/cri-tools/pkg/framework/util.go:306
failed to pull image: rpc error: code = Unknown desc = error pinging docker registry gcr.io: Get "https://gcr.io/v2/": dial tcp: lookup gcr.io on 10.0.0.1:53: no such host</failure></testcase>
<testcase name="[k8s.io] Container runtime should support execSync" classname="CRI validation" time="0.2">
<failure type="Failure" message="github.com/kubernetes-sigs/cri-tools/pkg/validate/container.go:232">github.com/kubernetes-sigs/cri-tools/pkg/validate/container.go:232
Expected &lt;string&gt;: sh: pgrep: not found</failure></testcase>
<testcase name="[k8s.io] Security Context runtime should support MaskedPaths" classname="CRI validation" time="0.2">
<failure type="Failure" message="github.com/kubernetes-sigs/cri-tools/pkg/validate/security_context_linux.go:624">github.com/kubernetes-sigs/cri-tools/pkg/validate/security_context_linux.go:624
Expected
    &lt;string&gt;: 
to equal
    &lt;string&gt;: /bin/sh: ls: Permission denied</failure></testcase>
</testsuite>"""


def test_critest_counts_from_ginkgo_v2_junit_set_the_internet_and_the_image_apart() -> None:
    counts = pod.critest_counts(JUNIT_V2)
    assert (counts["specs"], counts["passed"], counts["failed"], counts["skipped"], counts["needs_internet"], counts["needs_image"]) == (4, 1, 0, 1, 1, 1)
    assert list(counts["internet"].values()) == ["gcr.io/k8s-staging-cri-tools/test-image-tag:test"]
    assert counts["image"] == {"[k8s.io] Security Context runtime should support HostIpc": "ipcs"}
    assert counts["failures"] == {}


def test_critest_counts_from_ginkgo_v1_junit_read_what_went_wrong_from_the_text() -> None:
    counts = pod.critest_counts(JUNIT_V1)
    assert (counts["specs"], counts["passed"], counts["failed"], counts["needs_internet"], counts["needs_image"]) == (3, 0, 1, 1, 1)
    assert list(counts["internet"].values()) == ["gcr.io"]
    assert counts["image"] == {"[k8s.io] Container runtime should support execSync": "pgrep"}
    assert list(counts["failures"].values()) == ["Expected"]  # not one the image's programs explain: a failure


def test_the_stand_in_image_carries_every_program_critest_runs_and_a_sh_that_runs_them_from_path() -> None:
    assert "busybox-static" not in pod.IMAGE_PACKAGES  # its sh runs its own ls, never a masked /bin/ls
    assert set(pod.IMAGE_PROGRAMS) == {"pgrep", "ipcs"}  # critest's HostPID (pgrep) and HostIpc (ipcs -m) specs
    assert {"procps", "util-linux", "busybox"} <= set(pod.IMAGE_PACKAGES)


def test_node_options_refuse_what_doit_took_as_its_own_variable() -> None:
    # `doit node:crio-1.36 --cmdline cgroup_disable=memory --no-critest`: doit keeps cgroup_disable=memory as a
    # variable and hands --cmdline the next option; the node would boot with its memory cgroup after all.
    with pytest.raises(ContainerError, match=r"--cmdline has no value: it got the next option, '--no-critest'"):
        pod.check_node_options("--no-critest", "", stray={"cgroup_disable": "memory"})
    with pytest.raises(ContainerError, match=r"doit took cgroup_disable=memory as a variable of its own") as error:
        pod.check_node_options("", "", stray={"cgroup_disable": "memory"})
    assert "--cmdline=cgroup_disable=memory" in error.value.hint
    pod.check_node_options("cgroup_disable=memory", "linux-image-arm64-16k", stray={})
