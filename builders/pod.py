"""The pod test: crio from a recipe's .debs runs a pod, in a clean container of the target booted as a Pi boots.

`doit pod:crio-1.36@trixie-amd64` installs the .debs with apt in a container of the target's base image
(with systemd, and skopeo to load images), boots it with systemd as PID 1, and drives crio with crictl
as the kubelet would: a pod sandbox from the recipe's pause image, two containers in it, exec, logs,
stats, then stop and remove, after which no pod, container or mount of theirs may be left.

It runs natively only: QEMU user emulation cannot create the namespaces runc and crun set up (clone with
CLONE_NEWNS or CLONE_NEWPID gets EINVAL under qemu-aarch64). On an x86_64 host the recipe's trixie-amd64
build stands in for trixie arm64 (same crio.conf, units and relations); on an arm64 host it runs as is.

No registry is reached: the pause image (a few lines of C, builders/data/pod/pause.c, linked static) and a
busybox image (Debian's busybox, pgrep and ipcs) are built here and copied into crio's storage with skopeo.
"""
from __future__ import annotations

import functools
import io
import ipaddress
import json
import re
import tarfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .actions import logged_actions, step_log
from .acceptance import APT_ENV
from .arch import Arch, host_arch
from .components import cri_o
from .container import Container
from .errors import ContainerError
from .files import temporary_dir
from .recipe import Recipe
from .settings import Settings
from .deb import built_debs
from .attest import write_pod_report
from .pod_report import remove_report
from .view import say

DATA = Path(__file__).with_name("data") / "pod"
FULL_LOG = "the full log is artifacts/<recipe>/logs/pod.log (node.log on an emulated node)"
CRICTL_TIMEOUT = "60s"  # crictl's own 2 s is short for a Pi's first pod; the kubelet waits 4 minutes
BUSYBOX = "localhost/criobuild/busybox:test"
WEBSERVER = "localhost/criobuild/webserver:test"  # busybox's httpd on port 80, critest's web server
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # the images' environment, as busybox's own
# What the node needs beyond our packages: systemd as PID 1, and skopeo to put images into crio's storage.
NODE_PACKAGES = ("systemd-sysv", "dbus", "skopeo", "jq")  # jq: OOM_WRAPPER
# Docker refuses --privileged on our machines (its daemon lacks CAP_SYS_RESOURCE), and the node needs less.
# Its capabilities: every one the engine can grant (booted(), grantable_capabilities()): crio gives
# privileged containers all of them, and mounts and namespaces (SYS_ADMIN) and the pod's bridge and
# iptables (NET_ADMIN) need some anyway.
NODE_OPTIONS: dict[str, Any] = {
    "security_opt": ["seccomp=unconfined"],  # docker's seccomp profile refuses mount, unshare and pivot_root without --privileged
    "cgroupns": "private",  # the node's cgroups are its own tree, as a Pi's are
    "device_cgroup_rules": ["a *:* rwm"],  # a pod's device rules can only narrow what its node's cgroup allows
    "tmpfs": {"/run": "", "/run/lock": "", "/tmp": ""},  # systemd wants them; /tmp: conmon's and the pod's logs
    "stop_signal": "SIGRTMIN+3",  # what makes systemd shut down
}
# Docker mounts the cgroup hierarchies read-only without --privileged: remount them writable (only the
# node's own subtree, cgroupns=private) so systemd and crio can make cgroups, then boot.
CGROUP_MOUNTS = r"""awk '{for (i = 7; $i != "-"; i++); if ($(i + 1) ~ /^cgroup/) print $5}'"""  # mountinfo: fstype after "-"
# /proc/sys too: pinns writes a pod's namespaced sysctls there.
BOOT = f'for m in $({CGROUP_MOUNTS} /proc/self/mountinfo) /proc/sys; do mount -o remount,bind,rw "$m"; done; exec /sbin/init'
# crio gives the pause container oom_score_adj -998, and lowering it needs CAP_SYS_RESOURCE; privileged
# containers get every capability. Where the engine cannot grant one (our VMs: no process on them holds
# CAP_SYS_RESOURCE), each runtime is started through this wrapper, which drops what cannot be had from
# the bundle's config.json (or an exec's process.json) and runs ours unchanged.
OOM_WRAPPER = """#!/bin/sh
# criobuild pod test: this machine cannot grant @REFUSED@ (not even to root).
for arg; do
\tcase "$previous" in --bundle|-b) spec="$arg/config.json" ;; --process|-p) spec="$arg" ;; esac
\tcase "$arg" in --bundle=*) spec="${arg#--bundle=}/config.json" ;; esac
\tprevious="$arg"
done
if [ -n "$spec" ] && [ -f "$spec" ]; then
\tjq --argjson refused '@JSON@' 'def drop: if .capabilities then .capabilities |= with_entries(.value |= map(select(IN($refused[]) | not))) else . end;
\t\tdel(.process.oomScoreAdj?, .oomScoreAdj?) | if .process then .process |= drop else drop end' \\
\t\t"$spec" > "$spec.criobuild" && mv "$spec.criobuild" "$spec"
fi
exec @RUNTIME@ "$@"
"""
# Where crio keeps what a pod mounts; after the pod is removed none of these may be mounted.
POD_MOUNTS = re.compile(r" (/run/containers/storage/|/var/lib/containers/storage/overlay/|/run/netns/|/var/run/netns/|/run/(ipc|uts|user|pid)ns/|/run/crio/)")


def node_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    from .deb import deb_path

    return {
        "name": recipe.name,
        "doc": f"boot an emulated {recipe.target.suite} {recipe.target.arch} machine (QEMU, Debian's kernel) with {recipe.name}'s .debs and run the pod test in it",
        **logged_actions(node_test, [recipe, settings], step_log(settings, recipe.name, "node"), f"node:{recipe.name}"),
        "file_dep": [deb_path(recipe, c, settings) for c in recipe.components],
        "task_dep": [f"sums:{recipe.name}"],  # as pod_task: a .deb rebuilt for it is summed before the report names it
        "uptodate": [False],  # a test: it runs whenever asked
        "params": [
            {"name": "cmdline", "long": "cmdline", "default": "", "help": "more kernel command line, e.g. --cmdline=cgroup_disable=memory (as a Pi 5 boots; with '=': doit takes a bare name=value as its own variable)"},
            {"name": "kernel", "long": "kernel", "default": "", "help": "Debian's kernel package to boot, e.g. linux-image-arm64-16k (16K pages, as the Pi 5's kernel)"},
            {"name": "critest", "long": "critest", "type": bool, "default": True, "inverse": "no-critest", "help": "run critest after the pods (--no-critest: the pods only)"},
        ],
    }


def pod_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    from .deb import deb_path

    return {
        "name": recipe.name,
        "doc": f"boot a clean {recipe.target.suite} {recipe.target.arch} container with {recipe.name}'s .debs and run a pod with crictl (natively)",
        **logged_actions(pod_test, [recipe, settings], step_log(settings, recipe.name, "pod"), f"pod:{recipe.name}"),
        "file_dep": [deb_path(recipe, c, settings) for c in recipe.components],
        # After the sums: a .deb rebuilt for the test is summed (and signed) before the report names it.
        "task_dep": [f"sums:{recipe.name}"],
        "uptodate": [False],  # a test: it runs whenever asked
    }


def pod_test(recipe: Recipe, settings: Settings) -> None:
    """The pod test on a node container of this host's architecture (see node_test for the Pi's, emulated)."""
    check_native(recipe)
    run_pod_test(recipe, settings, f"pod test of {recipe.name}", native_node)


def node_test(recipe: Recipe, settings: Settings, cmdline: str = "", kernel: str = "", critest: bool = True) -> None:
    """The pod test on an emulated node of the target's own architecture (builders/vm.py): the kernel's command
    line and Debian's kernel package may be chosen (a Pi's `cgroup_disable=memory`, linux-image-arm64-16k)."""
    from . import vm

    check_node_options(cmdline, kernel)
    vm.check_host(recipe.target.arch)
    boot = functools.partial(emulated_node, cmdline=cmdline, kernel=kernel)
    run_pod_test(recipe, settings, f"pod test of {recipe.name} on an emulated {recipe.target.arch} node", boot, critest)


def check_node_options(cmdline: str, kernel: str, stray: dict[str, str] | None = None) -> None:
    """doit takes a bare `name=value` argument as one of its own variables, so `--cmdline cgroup_disable=memory`
    reaches us as an empty --cmdline (or as the next option), and the kernel would boot without it."""
    import doit.doit_cmd

    if stray is None:
        stray = dict(getattr(doit.doit_cmd, "_CMDLINE_VARS", None) or {})
    words = " ".join(f"{name}={value}" for name, value in stray.items())
    for option, value in (("--cmdline", cmdline), ("--kernel", kernel)):
        if value.startswith("-"):
            raise ContainerError(f"{option} has no value: it got the next option, {value!r}", hint=f"write `{option}=<value>`")
    if stray:
        raise ContainerError(
            f"doit took {words} as a variable of its own, not as part of an option: the node would boot without it",
            hint=f"for the kernel's command line join it to the option: `doit node:<recipe> --cmdline={words}` (quote it for more than one)",
        )


def run_pod_test(recipe: Recipe, settings: Settings, what: str, boot: Callable[..., Any], critest_too: bool = True) -> None:
    from .container import docker_client
    from .images import ensure_base_image

    debs = built_debs(recipe, settings, "the pod test")
    remove_report(settings.artifacts / recipe.name)  # an earlier run's: if this one fails, no report says these packages passed
    client = docker_client()
    base = ensure_base_image(client, recipe.target, settings.base_source)
    owner = str(settings.artifacts / recipe.name)
    with temporary_dir(settings.cache, "pod") as inputs:
        make_images(client, base, recipe.target.arch, inputs / "images", what, owner)
        for deb in debs:
            (inputs / "debs").mkdir(exist_ok=True)
            (inputs / "debs" / deb.name).write_bytes(deb.read_bytes())
        with boot(client, recipe, settings, base, inputs, debs, what, owner) as node:
            started = getattr(node, "started", time.monotonic())  # an emulated node's: when QEMU started
            load_images(node, recipe, what)
            subids = {f: node.output(["cat", f"/etc/{f}"]).splitlines() for f in ("subuid", "subgid")} if recipe.subid_ranges else {}
            runs = [run_pod(node, what, default_runtime(recipe), recipe.cgroup_manager)]
            seconds = {"to_first_pod": round(time.monotonic() - started)}
            say(f"{what}: the first pod ran and was removed {seconds['to_first_pod']} s after the node started")
            switch_cgroup_manager(node, other_manager(recipe.cgroup_manager), what)
            runs.append(run_pod(node, what, default_runtime(recipe), other_manager(recipe.cgroup_manager)))
            switch_cgroup_manager(node, recipe.cgroup_manager, what)
            critest_started = time.monotonic()
            critest = run_critest(node, what) if critest_too else NO_CRITEST  # last: its failing specs may leave pods behind
            seconds["critest"] = round(time.monotonic() - critest_started)
    report = {"recipe": recipe.name, "target": recipe.target.name, "runs": runs, "critest": critest, "subids": subids, "seconds": seconds}
    written = write_pod_report(settings.artifacts / recipe.name, report, debs)  # beside SHA256SUMS, which it leaves as it is
    for run in runs:
        say(f"{what}: with cgroup_manager {run['cgroup_manager']}, pod {run['pod_ip']} ran 2 containers on {recipe.target.distro} "
              f"{recipe.target.suite} {recipe.target.arch} under crio {run['crio_version']} ({run['runtime']}); nothing left after rmp")  # fmt: skip
    if critest.get("not_run"):
        say(f"{what}: critest not run ({critest['not_run']})")
    else:
        say(f"{what}: critest {critest['passed']} passed, {critest['failed']} failed, {critest['skipped']} skipped, "
              f"{critest['needs_internet']} needing images from the internet, {critest['needs_image']} failing only for our stand-in image, "
              f"of {critest['specs']} specs, in {seconds['critest']} s")  # fmt: skip
    say(f"{what}: report {' and '.join(str(p) for p in written)}")


@contextmanager
def native_node(client: Any, recipe: Recipe, settings: Settings, base: str, inputs: Path, debs: list[Path], what: str, owner: str) -> Iterator[Container]:
    with installed_node(client, base, inputs, debs, what, owner) as image:
        with booted(client, image, what, owner) as node:
            yield node


@contextmanager
def emulated_node(client: Any, recipe: Recipe, settings: Settings, base: str, inputs: Path, debs: list[Path], what: str, owner: str, cmdline: str = "", kernel: str = "") -> Iterator[Any]:
    from . import vm

    image = vm.ensure_node_image(client, recipe.target, settings.base_source, NODE_PACKAGES, kernel)
    console = settings.artifacts / recipe.name / "logs" / "node-console.log"
    with vm.booted_node(client, recipe, image, debs, inputs, settings.cache, console, what, owner, cmdline) as node:
        wait_for_systemd(node, what)
        check_kernel(node, what)
        wait_for_crio(node, what)
        yield node


def check_kernel(node: Any, what: str) -> None:
    """What the kernel check the cri-o package ships says of this kernel, as a Pi owner would run it."""
    from .components.cri_o import KERNEL_CHECK_PATH

    code, out, err = node.run(["python3", f"/{KERNEL_CHECK_PATH}"])
    node.say(f"+ python3 /{KERNEL_CHECK_PATH}\n{out}{err}")
    lines = (out + err).strip().splitlines() or [""]
    verdict = next((line for line in reversed(lines) if line.startswith(("ready", "NOT READY"))), lines[-1])
    say(f"{what}: the kernel check says (exit {code}): {verdict}")


NO_CRITEST = {"passed": 0, "failed": 0, "skipped": 0, "needs_internet": 0, "needs_image": 0, "specs": 0, "not_run": "asked with --no-critest"}


def default_runtime(recipe: Recipe) -> str:
    return cri_o.runtimes(recipe)[0].name


def other_manager(manager: str) -> str:
    return "cgroupfs" if manager == "systemd" else "systemd"


def switch_cgroup_manager(node: Container, manager: str, what: str) -> None:
    """What a user does whose kubelet uses another cgroup driver than the package's: a drop-in after ours, and a restart."""
    text = f'[crio.runtime]\ncgroup_manager = "{manager}"\nconmon_cgroup = "{cri_o.conmon_cgroup(manager)}"\n'
    node.call(["sh", "-c", f"cat > /etc/crio/crio.conf.d/50-cgroup-manager.conf <<'EOF'\n{text}EOF\nsystemctl restart crio || true"])
    wait_for_crio(node, what)


def check_native(recipe: Recipe) -> None:
    if recipe.target.arch != host_arch():
        native = f"{recipe.base_name}@trixie-{host_arch()}" if host_arch().value == "amd64" else recipe.name
        raise ContainerError(
            f"cannot run the pod test of {recipe.name} on this {host_arch()} host because QEMU user emulation cannot create "
            f"the namespaces a container needs (clone with CLONE_NEWNS or CLONE_NEWPID fails with EINVAL)",
            hint=f"run it natively: `doit build:{native} pod:{native}` here, or `doit pod:{recipe.name}` on an {recipe.target.arch} machine",
        )


# --------------------------------------------------------------------------- images, made here


# The stand-in for critest's busybox image, made from the target's own packages. Debian's busybox (not
# busybox-static, whose sh runs its applets before anything on PATH, so a masked /bin/ls is never executed),
# its applets as hard links in /bin as in busybox's own image, and the programs critest's specs run that
# Debian's busybox lacks: pgrep (procps) and ipcs (util-linux); each with the shared libraries it loads.
IMAGE_PACKAGES = ("gcc", "libc6-dev", "busybox", "procps", "util-linux")
IMAGE_PROGRAMS = ("pgrep", "ipcs")
MAKE_IMAGES = f"""set -eu
mkdir -p /out/pause /out/busybox/bin /out/busybox/etc
gcc -static -Os -s -o /out/pause/pause /src/pause.c
cp "$(command -v busybox)" /out/busybox/bin/busybox
for applet in $(busybox --list); do [ -e "/out/busybox/bin/$applet" ] || ln /out/busybox/bin/busybox "/out/busybox/bin/$applet"; done
for program in {' '.join(IMAGE_PROGRAMS)}; do rm -f "/out/busybox/bin/$program"; cp "$(command -v "$program")" /out/busybox/bin/; done  # rm: not through a link
for program in /out/busybox/bin/busybox {' '.join(f'/out/busybox/bin/{p}' for p in IMAGE_PROGRAMS)}; do ldd "$program"; done \\
  | grep -o '/[^ ]*' | sort -u | while read -r library; do cp -L --parents "$library" /out/busybox/; done
# what busybox's own image has besides the programs: /tmp, and root and nobody
mkdir -p -m 1777 /out/busybox/tmp
printf 'root:x:0:0:root:/root:/bin/sh\\nnobody:x:65534:65534:nobody:/home:/bin/false\\n' > /out/busybox/etc/passwd
printf 'root:x:0:\\nnogroup:x:65534:\\n' > /out/busybox/etc/group
chroot /out/busybox /bin/sh -c 'ls -d /tmp && pgrep --version && ipcs -V'  # each runs from the image alone
"""


def make_images(client: Any, base: str, arch: Arch, out: Path, what: str, owner: str) -> None:
    """pause.tar, busybox.tar and webserver.tar (docker-archive) in out: the pause program built static, and
    the stand-in busybox image (MAKE_IMAGES) with busybox's httpd as the web server."""
    with Container(client, base, what=f"{what}: making the images", owner=owner, network="bridge") as box:
        box.call(["apt-get", "update", "-q"], env=APT_ENV)
        box.call(["apt-get", "install", "-y", "-q", "--no-install-recommends", *IMAGE_PACKAGES], env=APT_ENV)
        box.copy_into(DATA, "/src")
        box.call(["sh", "-c", MAKE_IMAGES])
        box.copy_out("/out", out / "rootfs")
    out.mkdir(parents=True, exist_ok=True)
    image_archive(client, out / "rootfs" / "pause", ["/pause"], arch, out / "pause.tar", owner)
    image_archive(client, out / "rootfs" / "busybox", ["/bin/sh"], arch, out / "busybox.tar", owner)
    serve = "mkdir -p /www && echo criobuild-webserver > /www/index.html && exec httpd -f -p 80 -h /www"
    image_archive(client, out / "rootfs" / "busybox", ["/bin/sh", "-c", serve], arch, out / "webserver.tar", owner)


def image_archive(client: Any, rootfs: Path, entrypoint: list[str], arch: Arch, dest: Path, owner: str) -> None:
    """A one-layer image of rootfs saved as a docker-archive (what skopeo reads); the engine keeps nothing. Its
    config names the target's platform (FROM scratch would say the host's, and crio would note the mismatch)."""
    context = io.BytesIO()
    dockerfile = f"FROM scratch\nCOPY rootfs/ /\nENV PATH={PATH}\nENTRYPOINT {json.dumps(entrypoint)}\n".encode()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(rootfs, arcname="rootfs")
    context.seek(0)
    image, _ = client.images.build(fileobj=context, custom_context=True, rm=True, forcerm=True, labels={"io.criobuild": owner}, platform=arch.to_oci())
    try:
        with dest.open("wb") as f:
            for chunk in image.save(named=False):
                f.write(chunk)
    finally:
        client.images.remove(image.id, force=True)


# --------------------------------------------------------------------------- the node


@contextmanager
def installed_node(client: Any, base: str, inputs: Path, debs: list[Path], what: str, owner: str) -> Iterator[str]:
    """An image of the target's base with our .debs (and systemd, skopeo) installed by apt; removed afterwards."""
    with Container(client, base, what=what, owner=owner, network="bridge") as box:
        box.copy_into(inputs, "/criobuild")
        box.call(["apt-get", "update", "-q"], env=APT_ENV)
        box.call(["apt-get", "install", "-y", "-q", "--no-install-recommends", *NODE_PACKAGES, *(f"/criobuild/debs/{d.name}" for d in debs)], env=APT_ENV)
        with box.snapshot() as image:
            yield image


@contextmanager
def booted(client: Any, image: str, what: str, owner: str) -> Iterator[Container]:
    """The node running with systemd as PID 1 and crio started by its unit; its storage on a volume of its own."""
    from docker.types import Mount

    options = NODE_OPTIONS | {"mounts": [Mount("/var/lib/containers", None, type="volume")]}  # overlay cannot sit on docker's overlay
    options["cap_add"], refused = grantable_capabilities(client, image)
    with Container(client, image, what=what, owner=owner, network="bridge", command=["sh", "-c", BOOT], env={"container": "docker"}, options=options) as node:
        wait_for_systemd(node, what)
        if refused:
            wrap_runtimes(node, refused, what)
        wait_for_crio(node, what)
        yield node


# Capabilities beyond docker's default set (capabilities(7) names, as docker takes them).
EXTRA_CAPABILITIES = (
    "SYS_ADMIN", "NET_ADMIN", "SYS_RESOURCE", "SYS_PTRACE", "SYS_MODULE", "SYS_RAWIO", "SYS_PACCT", "SYS_NICE",
    "SYS_TIME", "SYS_TTY_CONFIG", "SYS_BOOT", "LEASE", "LINUX_IMMUTABLE", "IPC_LOCK", "IPC_OWNER", "NET_BROADCAST",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_CONTROL", "AUDIT_READ", "PERFMON",
    "BPF", "CHECKPOINT_RESTORE", "DAC_READ_SEARCH",
)  # fmt: skip


def grantable_capabilities(client: Any, image: str) -> tuple[list[str], list[str]]:
    """(what to add, what the engine refuses): ALL where it can, else each extra one it can give."""
    if grants(client, image, "ALL"):
        return ["ALL"], []
    refused = [c for c in EXTRA_CAPABILITIES if not grants(client, image, c)]
    return [c for c in EXTRA_CAPABILITIES if c not in refused], refused


def grants(client: Any, image: str, capability: str) -> bool:
    """Whether the engine can give a container this capability (docker fails to start it otherwise)."""
    import docker.errors

    try:  # an engine that does not know the name refuses to create, one that cannot give it to start
        probe = client.containers.create(image, ["true"], cap_add=[capability], network_mode="none", labels={"io.criobuild": "probe"})
    except docker.errors.APIError:
        return False
    try:
        probe.start()
        return probe.wait()["StatusCode"] == 0
    except docker.errors.APIError:
        return False
    finally:
        probe.remove(force=True)


def wrap_runtimes(node: Container, refused: list[str], what: str) -> None:
    """Start each runtime crio names through OOM_WRAPPER (a drop-in after ours), and restart crio."""
    handlers = crio_config(node)["runtime"]["runtimes"]
    names = [f"CAP_{c}" for c in refused]
    lines = [f"# criobuild pod test: this machine cannot grant {', '.join(names)} (see /usr/local/libexec/criobuild)"]
    for name, handler in handlers.items():
        wrapper = f"/usr/local/libexec/criobuild/{name}"
        script = OOM_WRAPPER.replace("@RUNTIME@", handler["runtime_path"]).replace("@JSON@", json.dumps(names)).replace("@REFUSED@", ", ".join(names))
        node.call(["sh", "-c", f"mkdir -p /usr/local/libexec/criobuild && cat > {wrapper} <<'EOF'\n{script}EOF\nchmod 755 {wrapper}"])
        lines += [f"[crio.runtime.runtimes.{name}]", f'runtime_path = "{wrapper}"']
    node.call(["sh", "-c", "cat > /etc/crio/crio.conf.d/99-criobuild-pod-test.conf <<'EOF'\n" + "\n".join(lines) + "\nEOF\nsystemctl restart crio || true"])  # wait_for_crio says why it does not answer
    node.say(f"{what}: this machine cannot grant {', '.join(names)}; crio starts {', '.join(handlers)} through a wrapper that drops them and oom_score_adj")


def wait_for_systemd(node: Container, what: str, seconds: int = 120) -> None:
    deadline = time.monotonic() + seconds
    state = ""
    while time.monotonic() < deadline:  # systemctl cannot connect until PID 1 has made its socket
        state = node.run(["timeout", str(seconds), "systemctl", "is-system-running", "--wait"])[1].strip()
        if state in ("running", "degraded"):
            node.say(f"systemd: {state}" + (f"; failed units:\n{node.output(['systemctl', '--failed', '--no-legend'])}" if state == "degraded" else ""))
            return
        time.sleep(1)
    raise ContainerError(f"{what}: systemd did not finish booting the node because it says {state!r}", hint=journal(node, ""))


def wait_for_crio(node: Container, what: str, seconds: int = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if node.run(["crictl", "info"])[0] == 0:
            node.say(node.output(["crictl", "version"]), end="")
            return
        if node.run(["systemctl", "is-failed", "--quiet", "crio"])[0] == 0:
            break
        time.sleep(2)
    raise ContainerError(f"{what}: crio does not answer on its socket; its journal says:\n{journal(node, 'crio')}", hint=FULL_LOG)


def journal(node: Container, unit: str, lines: int = 30) -> str:
    argv = ["journalctl", "--no-pager", "-o", "cat", "-n", str(lines)] + (["-u", unit] if unit else ["-p", "warning"])
    code, out, err = node.run(argv)
    return (out + err).strip()


# --------------------------------------------------------------------------- the pod


def crictl(node: Container, what: str, *args: str) -> str:
    """crictl's output; on failure, its own words and crio's journal."""
    code, out, err = node.run(["crictl", f"--timeout={CRICTL_TIMEOUT}", *args])
    node.say(f"+ crictl {' '.join(args)}\n{out}{err}", end="" if (out + err).endswith("\n") or not out + err else "\n")
    if code != 0:
        raise ContainerError(f"{what}: `crictl {' '.join(args)}` failed: {(err or out).strip()}\ncrio's journal says:\n{crio_complaints(node)}", hint=FULL_LOG)
    return out.strip()


def crio_complaints(node: Container) -> str:
    """crio's own errors and warnings since it started (a CNI config it could not read is long scrolled past)."""
    lines = journal(node, "crio", 500).splitlines()
    complaints = [line for line in lines if re.search(r"level=(warning|error|fatal)", line)]
    return "\n".join(complaints[-10:] or lines[-15:])


def crio_config(node: Container) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(node.output(["sh", "-c", "crio config 2>/dev/null"]))["crio"]


def load_images(node: Container, recipe: Recipe, what: str) -> None:
    """Copy the images into the storage crio reads, named as crio will ask for them."""
    for archive, name in (("pause.tar", recipe.pause_image), ("busybox.tar", BUSYBOX), ("webserver.tar", WEBSERVER)):
        node.call(["skopeo", "copy", "--quiet", f"docker-archive:/criobuild/images/{archive}", storage(node) + name])


def storage(node: Container) -> str:
    """skopeo's name for crio's image store: its driver, root and runroot."""
    config = crio_config(node)
    driver = config.get("storage_driver") or "overlay"
    return f"containers-storage:[{driver}@{config.get('root', '/var/lib/containers/storage')}+{config.get('runroot', '/run/containers/storage')}]"


def pod_files(run: str) -> dict[str, dict[str, Any]]:
    """crictl's pod and container configs: a web server and a client that fetches from it over the pod's localhost.
    Each run is a pod of its own, as the kubelet makes them: its own name, uid and log directory, so no
    run reads what another's containers wrote."""
    uid = f"criobuild-{run}-{uuid.uuid4()}"
    pod = {"metadata": {"name": f"criobuild-{run}", "namespace": "default", "uid": uid, "attempt": 0}, "log_directory": f"/tmp/criobuild-pods/{uid}", "linux": {}}
    serve = f"mkdir -p /www && echo criobuild-web > /www/index.html && echo '{WEB_SAYS}' && exec httpd -f -p 8080 -h /www"
    web = {"metadata": {"name": "web"}, "image": {"image": BUSYBOX}, "command": ["/bin/sh", "-c", serve], "log_path": "web.log", "linux": {}}
    client = {"metadata": {"name": "client"}, "image": {"image": BUSYBOX}, "command": ["/bin/sleep", "3600"], "log_path": "client.log", "linux": {}}
    return {"pod.json": pod, "web.json": web, "client.json": client}


WEB_SAYS = "web: serving /www on 8080"  # the one line the web container prints


def printed_once(logs: str, line: str) -> bool:
    """The container's log (as `crictl logs` shows it) holds that line once: a second would be another container's."""
    return logs.splitlines().count(line) == 1


def run_pod(node: Container, what: str, default: str, run: str) -> dict[str, Any]:
    """One pod through its life; what crictl showed of it. default: the runtime crio uses unless configured
    otherwise; run: what tells this pod from the others of the test (its name, uid and log directory)."""
    files = f"/criobuild/pods/{run}"
    for name, content in pod_files(run).items():
        node.call(["sh", "-c", f"mkdir -p {files} && cat > {files}/{name} <<'EOF'\n{json.dumps(content)}\nEOF"])
    before = pod_state(node, what)
    pod = crictl(node, what, "runp", f"{files}/pod.json")
    web = crictl(node, what, "create", pod, f"{files}/web.json", f"{files}/pod.json")
    crictl(node, what, "start", web)
    client = crictl(node, what, "create", pod, f"{files}/client.json", f"{files}/pod.json")
    crictl(node, what, "start", client)
    fetched = retry(lambda: crictl(node, what, "exec", client, "wget", "-qO-", "http://127.0.0.1:8080/"), what)
    expect(fetched == "criobuild-web", what, f"the client fetched {fetched!r} from the web container over localhost, not 'criobuild-web'")
    logs = crictl(node, what, "logs", web)
    expect(printed_once(logs, WEB_SAYS), what, f"`crictl logs` does not show the one line this pod's web container printed, {WEB_SAYS!r}: {logs!r}")
    ip = pod_ip(crictl(node, what, "inspectp", "-o", "json", pod))
    subnet = bridge_subnet(node)
    expect(ip in subnet, what, f"the pod's address {ip} is not in the bridge network {subnet}")
    stats = crictl(node, what, "stats", "-a")  # -a: crictl 1.20 lists none without it
    expect(web[:13] in stats and client[:13] in stats, what, f"`crictl stats` does not list both containers:\n{stats}")
    crictl(node, what, "stopp", pod)
    crictl(node, what, "rmp", pod)
    after = pod_state(node, what)
    left = {kind: sorted(after[kind] - before[kind]) for kind in after}
    expect(not any(left.values()), what, f"the pod left something behind after rmp: {left}")
    config = crio_config(node)["runtime"]
    return {
        "crio_version": runtime_version(node, what),
        "cgroup_manager": config.get("cgroup_manager", "systemd"), "runtime": config.get("default_runtime") or default,
        "pod_ip": str(ip), "bridge": str(subnet), "exec": fetched, "logs": logs, "left": left,
        "oom_score_adj_dropped": node.run(["test", "-f", "/etc/crio/crio.conf.d/99-criobuild-pod-test.conf"])[0] == 0,
    }  # fmt: skip


# A critest failure only because a registry on the internet was out of reach (gcr.io/k8s-staging-cri-tools,
# registry.k8s.io: nginx, httpd, nonewprivs, image tags and digests): counted apart, with the image.
NEEDS_INTERNET = re.compile(r"failed to pull image.*?(no such host|pinging (?:container|docker) registry|dial tcp|i/o timeout)", re.S)
REGISTRY_REF = re.compile(r'docker://([^\s"]+?):\s|(?:container|docker) registry ([^\s:]+)')
# A failure only because our stand-in image lacks a program a spec runs (as the runtime or its sh says so):
# counted apart too, with the program; make_images gives the image every program critest's specs run.
IMAGE_LACKS = re.compile(r"executable file [`'\"]?([^`'\"\s]+)[`'\"]? not found in \$PATH|\bsh: (?:\d+: )?([^\s:]+): not found")


def run_critest(node: Container, what: str) -> dict[str, Any]:
    """cri-tools' CRI validation suite against this crio, with our images standing in for its default ones.

    The node is prepared as CRI-O's own CI prepares a host for critest (contrib/test/ci/critest.yml): the
    host-port specs fetch from 127.0.0.1:<port>, which DNAT reaches only with route_localnet and a masquerade."""
    node.call(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet && iptables -t nat -I POSTROUTING -s 127.0.0.0/8 ! -d 127.0.0.0/8 -j MASQUERADE"])
    argv = ["critest", "-runtime-endpoint", "unix:///var/run/crio/crio.sock", *critest_flags(node, what)]
    _, out, err = node.run(argv)
    node.say(f"+ {' '.join(argv)}\n{out}{err}")
    return critest_counts(node.output(["sh", "-c", "cat /criobuild/critest/*.xml"]))


def critest_flags(node: Container, what: str) -> list[str]:
    """What this critest takes (ginkgo v2 from cri-tools 1.25, -test-images-file from 1.24), read from its --help."""
    from .components.cri_tools import CRITEST_DEFAULT_IMAGE

    _, out, err = node.run(["critest", "--help"])
    usage = out + err
    node.call(["mkdir", "-p", "/criobuild/critest"])
    if "test-images-file" in usage:
        images = f"defaultTestContainerImage: {BUSYBOX}\nwebServerTestImage: {WEBSERVER}\n"
        node.call(["sh", "-c", f"cat > /criobuild/critest/images.yaml <<'EOF'\n{images}EOF"])
        flags = ["-test-images-file", "/criobuild/critest/images.yaml"]
    else:  # its default image is ours under that name, which it also asks for unqualified (busybox:1.28)
        node.call(["skopeo", "copy", "--quiet", "docker-archive:/criobuild/images/busybox.tar", storage(node) + CRITEST_DEFAULT_IMAGE])
        search = 'unqualified-search-registries = ["docker.io"]\n'
        node.call(["sh", "-c", f"mkdir -p /etc/containers/registries.conf.d && printf '{search}' > /etc/containers/registries.conf.d/50-criobuild-critest.conf && systemctl restart crio"])
        wait_for_crio(node, what)
        flags = []
    if "junit-report" in usage:
        return flags + ["-ginkgo.junit-report=/criobuild/critest/junit.xml", "-ginkgo.no-color", "-ginkgo.succinct"]
    return flags + ["-report-dir", "/criobuild/critest", "-ginkgo.noColor", "-ginkgo.succinct"]


def critest_counts(xml: str) -> dict[str, Any]:
    """From Ginkgo's JUnit report: passed, failed, skipped, and which failures only wanted the internet or a
    program our stand-in image lacks (each counted apart, not as failed)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    cases = [c for c in root.iter("testcase") if not c.get("name", "").startswith(("[BeforeSuite]", "[AfterSuite]", "[SynchronizedBeforeSuite]"))]
    counts: dict[str, Any] = {"specs": len(cases), "passed": 0, "failed": 0, "skipped": 0, "needs_internet": 0, "needs_image": 0,
                              "failures": {}, "internet": {}, "image": {}}  # fmt: skip
    for case in cases:
        name = re.sub(r"^\[It\] |\s+", " ", case.get("name", "")).strip()
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if case.find("skipped") is not None or case.get("status") in ("skipped", "pending"):
            counts["skipped"] += 1
        elif problem is None:
            counts["passed"] += 1
        elif NEEDS_INTERNET.search(text := f"{problem.get('message', '')}\n{problem.text or ''}"):
            counts["needs_internet"] += 1
            ref = REGISTRY_REF.search(text)
            counts["internet"][name] = next((g for g in ref.groups() if g), "") if ref else ""
        elif lacks := IMAGE_LACKS.search(text):
            counts["needs_image"] += 1
            counts["image"][name] = next(g for g in lacks.groups() if g)
        else:
            counts["failed"] += 1
            # ginkgo v1 puts the spec's file:line in the message and what went wrong in the text
            lines = [line.strip() for line in text.splitlines() if line.strip() and not re.fullmatch(r"\S+\.go:\d+", line.strip())]
            counts["failures"][name] = (lines[0] if lines else "")[:300]
    return counts


def runtime_version(node: Container, what: str) -> str:
    found = re.search(r"RuntimeVersion:\s*(\S+)", crictl(node, what, "version"))
    return found.group(1) if found else "unknown"


def pod_state(node: Container, what: str) -> dict[str, set[str]]:
    """The pods, containers and pod mounts there are (what a pod test must not add to)."""
    pods, containers = crictl(node, what, "pods", "-q"), crictl(node, what, "ps", "-a", "-q")
    return {"pods": set(pods.split()), "containers": set(containers.split()), "mounts": pod_mounts(node)}


def retry(call: Any, what: str, attempts: int = 10) -> Any:
    """httpd may not listen yet when the client first asks."""
    for attempt in range(attempts):
        try:
            return call()
        except ContainerError:
            if attempt == attempts - 1:
                raise
            time.sleep(1)


def expect(ok: bool, what: str, why: str) -> None:
    if not ok:
        raise ContainerError(f"{what}: {why}", hint=FULL_LOG)


def pod_mounts(node: Container) -> set[str]:
    return mounts_of_pods(node.output(["cat", "/proc/1/mountinfo"]))


def mounts_of_pods(mountinfo: str) -> set[str]:
    return {line.split()[4] for line in mountinfo.splitlines() if POD_MOUNTS.search(" " + line.split()[4])}


def pod_ip(inspect: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(json.loads(inspect)["status"]["network"]["ip"])


def bridge_subnet(node: Container) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return subnet_of(node.output(["sh", "-c", "cat /etc/cni/net.d/*crio*bridge*"]))


def subnet_of(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The subnet of the bridge CNI config our cri-o package installs (a .conf or a .conflist; its IPAM's first range)."""
    config = json.loads(text)
    ipam = next(p for p in config.get("plugins", [config]) if p.get("type") == "bridge")["ipam"]
    subnet = ipam["ranges"][0][0]["subnet"] if "ranges" in ipam else ipam["subnet"]
    return ipaddress.ip_network(subnet)
