"""An emulated Raspberry Pi for the pod test: Debian's own arm kernel booted by QEMU (full-system, no KVM).

QEMU user emulation runs the arm64 and armhf binaries but cannot create the namespaces a container needs;
a whole emulated machine can. `doit node:crio-1.36` (trixie arm64) and `doit node:crio-1.33@trixie-armhf`:

1. the node image: the target's base image with Debian's kernel (linux-image-arm64, or linux-image-armmp-lpae
   for armhf on QEMU's `virt` board), systemd, udev, the QEMU guest agent and what the pod test needs,
   installed by apt (under QEMU user emulation; made once, then cached by the engine);
2. the recipe's .debs installed in a container of it by apt, its filesystem exported into an ext4 disk image
   (mke2fs -d, in a container, so ownership survives whoever runs the tool), and the kernel and initrd copied
   out of /boot;
3. `qemu-system-aarch64 -M virt` (or `qemu-system-arm -M virt`) boots them with -kernel/-initrd: systemd as
   PID 1, cgroup v2, QEMU user networking; commands run in it through the guest agent (a virtio serial port);
4. the pod test of builders/pod.py runs as on a native node; then the machine is powered off and its disk
   removed, also on Ctrl-C (QEMU dies with its run: PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from .arch import Arch, host_arch
from .container import Container
from .errors import ContainerError
from .images import build_image, ensure_base_image, image_exists, image_lock
from .files import locked, temporary_dir
from .recipe import Recipe, Target
from .tools import require_tool
from .view import say

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Board:
    qemu: str  # the full-system emulator, from Debian's qemu-system-arm
    kernel: str  # Debian's kernel package for it
    machine: tuple[str, ...]


BOARDS = {
    Arch.arm64: Board("qemu-system-aarch64", "linux-image-arm64", ("-M", "virt", "-cpu", "max,pauth-impdef=on")),
    # armmp-lpae: the ARMv7 kernel with large physical addresses, which QEMU's virt board needs above 4 GiB;
    # highmem=off keeps the board's devices below 4 GiB for a 32-bit kernel.
    Arch.armhf: Board("qemu-system-arm", "linux-image-armmp-lpae", ("-M", "virt,highmem=off", "-cpu", "cortex-a15")),
}
# What every node has besides the kernel: systemd as PID 1, udev for the disks, the guest agent that runs our
# commands, networkd for QEMU's DHCP; kmod and iptables for what crio and the CNI plugins load and set.
# Debian's kernel enables AppArmor (a container's engine hides it): critest's AppArmor specs then load their
# profiles with `sudo apparmor_parser`, as on CRI-O's CI hosts.
NODE_PACKAGES = ("systemd-sysv", "udev", "dbus", "qemu-guest-agent", "kmod", "iproute2", "iptables", "procps",
                 "python3", "apparmor", "sudo")  # python3: cri-o's kernel check
# Before the kernel is installed: an initrd of just what mounts the root disk (initramfs-tools would copy most of
# the kernel's modules, slowly, under emulation), and none of the drivers no emulated node has.
KERNEL_SETUP = r"""set -e
mkdir -p /etc/initramfs-tools/conf.d /etc/dpkg/dpkg.cfg.d
echo MODULES=list > /etc/initramfs-tools/conf.d/criobuild
printf 'virtio_pci\nvirtio_blk\nvirtio_net\nvirtio_console\next4\n' >> /etc/initramfs-tools/modules
for d in drivers/gpu drivers/media drivers/net/wireless drivers/staging drivers/infiniband drivers/iio drivers/bluetooth drivers/scsi drivers/usb drivers/hid drivers/input sound net/wireless net/mac80211 net/bluetooth; do
  echo "path-exclude=/usr/lib/modules/*/kernel/$d/*" >> /etc/dpkg/dpkg.cfg.d/criobuild-node
done
"""
NODE_SETUP = r"""set -e
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' > /etc/systemd/network/10-qemu.network
systemctl enable systemd-networkd qemu-guest-agent
echo 'nameserver 10.0.2.3' > /etc/resolv.conf.criobuild
echo '/dev/vda / ext4 defaults 0 1' > /etc/fstab
echo pi > /etc/hostname.criobuild
printf '127.0.0.1 localhost\n127.0.1.1 pi\n::1 localhost ip6-localhost ip6-loopback\n' > /etc/hosts.criobuild  # sudo resolves its host
"""
DISK_GIB = 6
MEMORY_MIB = 2048
BOOT_SECONDS = 600  # a cold boot under TCG on two shared cores takes one to three minutes


def board(arch: Arch) -> Board:
    if arch not in BOARDS:
        raise ContainerError(f"there is no emulated node for {arch}", hint="the emulated node is for the Pi's arm64 and armhf; on amd64 the pod test runs natively: `doit pod:<recipe>@trixie-amd64`")
    return BOARDS[arch]


def check_host(arch: Arch) -> None:
    require_tool(board(arch).qemu, "qemu-system-arm", f"boot an emulated {arch} node")


# --------------------------------------------------------------------------- the disk


def ensure_node_image(client: docker.DockerClient, target: Target, base_source: str, extra: tuple[str, ...], kernel: str = "") -> str:
    """The target's base with a kernel, systemd and the guest agent (built under QEMU user emulation, once)."""
    base = ensure_base_image(client, target, base_source)
    dockerfile = (
        f"# base image id {client.images.get(base).id}\nFROM {base}\nENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8\n"
        + shell_run(KERNEL_SETUP)
        + f"RUN apt-get update -q && apt-get install -y -q --no-install-recommends {kernel or board(target.arch).kernel} "
        f"{' '.join(sorted({*NODE_PACKAGES, *extra}))} && rm -rf /var/lib/apt/lists/*\n"
        + shell_run(NODE_SETUP)
    )
    name = f"criobuild/node:{target.distro}-{target.suite}-{target.arch}-{hashlib.sha256(dockerfile.encode()).hexdigest()[:12]}"
    if not image_exists(client, name):
        with locked(image_lock(name), f"waiting for another build that is making {name}"):
            if not image_exists(client, name):
                say(f"building {name}: Debian's kernel, systemd and the guest agent, under QEMU user emulation (a few minutes, once)")
                build_image(client, dockerfile, name)
    return name


def shell_run(script: str) -> str:
    """A Dockerfile RUN of a shell script (JSON form: its quotes and newlines as they are)."""
    return f"RUN {json.dumps(['sh', '-c', script])}\n"


def disk_maker(client: docker.DockerClient, base_source: str) -> str:
    """A container image of this host's architecture with mke2fs."""
    host = Target(distro="debian", suite="trixie", arch=host_arch(), mirror="http://deb.debian.org/debian")
    base = ensure_base_image(client, host, base_source)
    dockerfile = f"FROM {base}\nRUN apt-get update -q && apt-get install -y -q --no-install-recommends e2fsprogs && rm -rf /var/lib/apt/lists/*\n"
    name = f"criobuild/diskmaker:{hashlib.sha256(dockerfile.encode()).hexdigest()[:12]}"
    if not image_exists(client, name):
        with locked(image_lock(name), f"waiting for another build that is making {name}"):
            if not image_exists(client, name):
                build_image(client, dockerfile, name)
    return name


def make_disk(client: docker.DockerClient, node: Container, maker: str, out: Path, what: str) -> None:
    """out/disk.img (ext4 of the node container's filesystem, its root), out/vmlinuz and out/initrd.img."""
    # /.dockerenv would make systemd take the machine for a Docker container ("Detected virtualization docker"):
    # it would then skip what it does only on a real machine, securityfs (so AppArmor could load no profile) among it.
    finish = "mv /rootfs/etc/resolv.conf.criobuild /rootfs/etc/resolv.conf && mv /rootfs/etc/hostname.criobuild /rootfs/etc/hostname && mv /rootfs/etc/hosts.criobuild /rootfs/etc/hosts && rm -f /rootfs/.dockerenv && : > /rootfs/etc/machine-id"
    with Container(client, maker, volumes={str(out): {"bind": "/out", "mode": "rw"}}, what=f"{what}: the disk", owner=node.owner) as box:
        box.call(["mkdir", "-p", "/rootfs"])
        box.container.put_archive("/rootfs", node.container.export())
        box.call(["sh", "-euc", finish])
        box.call(["sh", "-euc", "cp -L /rootfs/vmlinuz /out/vmlinuz && cp -L /rootfs/initrd.img /out/initrd.img"])
        box.call(["mke2fs", "-q", "-t", "ext4", "-L", "root", "-d", "/rootfs", "/out/disk.img", f"{DISK_GIB}G"])


# --------------------------------------------------------------------------- the machine


class Guest:
    """Commands in the booted machine through the QEMU guest agent (qemu-ga), as `docker exec` runs them in a
    container: argv, an environment, standard input, and the exit code and output back."""

    def __init__(self, name: str) -> None:
        self.name = name  # an abstract socket: no file, and no path over AF_UNIX's 107 bytes however deep the cache
        self.file: Any = None

    def connect(self, deadline: float, alive) -> None:
        while time.monotonic() < deadline:
            if not alive():
                raise ContainerError("the emulated node stopped while it booted", hint="its console log says why (artifacts/<recipe>/logs/node-console.log)")
            with contextlib.suppress(OSError, ContainerError, ValueError, TimeoutError):
                conn = socket.socket(socket.AF_UNIX)
                conn.settimeout(10)
                conn.connect("\0" + self.name)
                self.file = conn.makefile("rw")
                self.request("guest-sync", id=int(time.time()))
                conn.settimeout(None)
                return
            time.sleep(2)
        raise ContainerError(f"the emulated node's guest agent did not answer within {BOOT_SECONDS} s", hint="its console log says where the boot stopped (artifacts/<recipe>/logs/node-console.log)")

    def request(self, command: str, **arguments: Any) -> Any:
        self.file.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
        self.file.flush()
        while True:
            line = self.file.readline()
            if not line:
                raise ContainerError(f"the emulated node's guest agent went away during {command}")
            answer = json.loads(line)
            if "error" in answer:
                raise ContainerError(f"the emulated node's guest agent refused {command}: {answer['error'].get('desc')}")
            if "return" in answer:
                return answer["return"]

    def run(self, argv: list[str], env: dict[str, str] | None = None, stdin: str = "") -> tuple[int, str, str]:
        arguments: dict[str, Any] = {"path": "/usr/bin/env", "arg": [f"{k}={v}" for k, v in (env or {}).items()] + argv, "capture-output": True}
        if stdin:
            arguments["input-data"] = base64.b64encode(stdin.encode()).decode()
        pid = self.request("guest-exec", **arguments)["pid"]
        while True:
            status = self.request("guest-exec-status", pid=pid)
            if status["exited"]:
                out, err = (base64.b64decode(status.get(k, "")).decode(errors="replace") for k in ("out-data", "err-data"))
                return status.get("exitcode", -status.get("signal", 1)), out, err
            time.sleep(0.2)


class Machine:
    """The running emulated node: QEMU on this host, its console in a log, its commands through the guest agent."""

    def __init__(self, arch: Arch, files: Path, console: Path, cmdline: str) -> None:
        self.board = board(arch)
        self.files = files
        self.console = console
        self.cmdline = cmdline
        self.process: subprocess.Popen | None = None
        self.guest = Guest(f"criobuild-qga-{os.getpid()}-{secrets.token_hex(4)}")
        self.started = 0.0

    def argv(self) -> list[str]:
        return [
            self.board.qemu, *self.board.machine, "-smp", "2", "-m", str(MEMORY_MIB), "-display", "none", "-monitor", "none",
            "-no-reboot", "-serial", f"file:{self.console}",
            "-kernel", str(self.files / "vmlinuz"), "-initrd", str(self.files / "initrd.img"),
            "-append", f"root=/dev/vda rw console=ttyAMA0 panic=-1 {self.cmdline}".strip(),
            "-drive", f"file={self.files / 'disk.img'},if=none,id=disk,format=raw", "-device", "virtio-blk-pci,drive=disk",
            "-netdev", "user,id=net", "-device", "virtio-net-pci,netdev=net,romfile=",
            "-chardev", f"socket,path={self.guest.name},abstract=on,server=on,wait=off,id=agent",
            "-device", "virtio-serial-pci", "-device", "virtserialport,chardev=agent,name=org.qemu.guest_agent.0",
        ]  # fmt: skip

    def __enter__(self) -> Machine:
        self.console.parent.mkdir(parents=True, exist_ok=True)
        say(f"+ {shlex.join(self.argv())}")
        self.started = time.monotonic()
        self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        try:
            self.guest.connect(self.started + BOOT_SECONDS, lambda: self.process.poll() is None)
        except BaseException:
            self.stop()
            raise
        say(f"the emulated node's guest agent answers {time.monotonic() - self.started:.0f} s after QEMU started")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Power off (30 s), else kill QEMU."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(Exception):
            self.guest.request("guest-shutdown", mode="powerdown")
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        output = self.process.stdout.read().decode(errors="replace").strip() if self.process.stdout else ""
        if output:
            say(f"QEMU said: {output}")


def die_with_parent() -> None:
    """In QEMU's process before exec: the kernel kills it when its run ends, however it ends."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Node:
    """A booted emulated node with the surface the pod test uses of a node container (call, output, stdout, run)."""

    def __init__(self, machine: Machine, what: str) -> None:
        self.machine = machine
        self.what = what

    @property
    def started(self) -> float:
        return self.machine.started

    def run(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
        return self.machine.guest.run(argv, env)

    def call(self, argv: list[str], *, env: dict[str, str] | None = None, **_: Any) -> None:
        self.say(f"+ {' '.join(argv)}")
        code, out, err = self.run(argv, env)
        self.say(out + err, end="")
        if code != 0:
            raise ContainerError(f"{self.what}: `{' '.join(argv)}` failed because it returned {code} in the emulated node\n{(out + err)[-3000:]}", hint="its output is above")

    def output(self, argv: list[str]) -> str:
        code, out, err = self.run(argv)
        if code != 0:
            raise ContainerError(f"{self.what}: `{' '.join(argv)}` failed because it returned {code}: {out}{err}")
        return out

    def stdout(self, argv: list[str]) -> str:
        return self.run(argv)[1]

    def say(self, text: str, end: str = "\n") -> None:
        print(text, end=end, flush=True)


@contextlib.contextmanager
def booted_node(client: docker.DockerClient, recipe: Recipe, image: str, debs: list[Path], inputs: Path, cache: Path, console: Path, what: str, owner: str, cmdline: str = "") -> Iterator[Node]:
    """The node image with the recipe's .debs installed by apt, as a disk, booted; gone afterwards."""
    maker = disk_maker(client, "auto")
    with temporary_dir(cache / "nodes", recipe.name.replace("@", "-")) as files:
        with Container(client, image, what=what, owner=owner, network="bridge") as box:
            box.copy_into(inputs, "/criobuild")
            box.call(["apt-get", "update", "-q"], env=APT_ENV)
            box.call(["apt-get", "install", "-y", "-q", "--no-install-recommends", *(f"/criobuild/debs/{d.name}" for d in debs)], env=APT_ENV)
            box.call(["rm", "-rf", "/var/lib/apt/lists"])
            make_disk(client, box, maker, files, what)
        with Machine(recipe.target.arch, files, console, cmdline) as machine:
            yield Node(machine, what)
    shutil.rmtree(files, ignore_errors=True)
