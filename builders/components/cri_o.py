"""cri-o/cri-o: the CRI runtime itself, built with upstream's make targets.

What changes between releases is in ERAS below; everything else is the same from 1.18 to 1.37.
Our settings (where conmon, the OCI runtimes and the CNI plugins are installed, the recipe's cgroup
manager and pause image) go into the drop-in /etc/crio/crio.conf.d/10-crio.conf, as the official
packages do, so a user's own drop-in (20-local.conf) wins and survives upgrades. /etc/crio/crio.conf is
what this very crio prints with that drop-in (`make crio.conf`): every option, documented.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ContainerError, PackageError, RecipeError
from . import cni_plugins, conmon, crun, runc
from .base import CNI_DIR, OUT, Command, Eras, License, Package, Runtime, Upstream, make, sh, write_file

if TYPE_CHECKING:
    from ..recipe import Component, Recipe

COMPANIONS = {u.name: u for u in (conmon.UPSTREAM, cni_plugins.UPSTREAM, runc.UPSTREAM, crun.UPSTREAM)}  # what cri-o's package depends on
KERNEL_CHECK = Path(__file__).resolve().parent.parent / "kernel_check.py"
KERNEL_CHECK_PATH = "usr/share/cri-o/kernel_check.py"  # installed 0755; the postinst runs it
DROP_IN = "etc/crio/crio.conf.d/10-crio.conf"
DROP_IN_BUILD_DIR = "/tmp/criobuild-home/crio.conf.d"  # the build's HOME: writable whoever the build runs as
PLUGIN_DIRS = (CNI_DIR, "/opt/cni/bin")  # ours, then Kubernetes' kubernetes-cni package
CONFIGS = ("etc/crio/crio.conf", "etc/crio/crio.conf.d/")  # as tarball paths
# A path crio.conf or a drop-in gives for one of our programs: conmon, monitor_path, runtime_path, pinns_path.
CONF_PATH_RE = re.compile(r'^(?P<lead>[ \t]*(?:conmon|monitor_path|runtime_path|pinns_path)[ \t]*=[ \t]*")/usr/(?P<dir>bin|libexec)/', re.M)
PLUGIN_DIRS_RE = re.compile(r"^(?P<lead>[ \t]*plugin_dirs[ \t]*=[ \t]*)\[[^\]]*\]", re.M)


@dataclass(frozen=True)
class Era:
    cni_configs: tuple[str, ...]  # from contrib/cni, installed to /etc/cni/net.d
    runtimes: tuple[str, ...]  # OCI runtimes crio.conf names; the first is the default, as upstream's
    monitor_path: bool  # [crio.runtime.runtimes.*] monitor_path (1.24+) instead of [crio.runtime] conmon
    # Build tags added to the recipe's: the switch the vendored containerd has for its Go plugin loader.
    # On amd64 only, containerd/plugin imports Go's `plugin` package, which makes the linker keep every
    # exported method and export all of crio's symbols (177,565 of them: crio 1.36 67.2 MB, 49.9 MB without).
    # crio never loads a containerd plugin (it calls no plugin.Load). Upstream's release build (nix/derivation.nix)
    # links crio fully static, where nothing is exported dynamically; ours links the target's libraries.
    plugin_tags: tuple[str, ...]


# Read from each minor's newest tag (and release-1.37). The bridge config: 11-crio-ipv4-bridge from 1.19
# (IPv4 only, and it sorts after the 10-*.conflist of flannel, calico or weave, which then win).
ERAS = Eras(
    Era(cni_configs=("10-crio-bridge.conf", "99-loopback.conf"), runtimes=("runc",), monitor_path=False, plugin_tags=()),
    ("1.19", {"cni_configs": ("11-crio-ipv4-bridge.conf", "99-loopback.conf")}),
    ("1.24", {"monitor_path": True}),
    # containerd/plugin is vendored from 1.25.0: `static_build` is its only switch until no_dynamic_plugins
    # (vendored from 1.33.0, containerd 1.7.27). static_build also picks the static devicemapper wrapper of
    # containers/storage in 1.25-1.30, which the recipes' exclude_graphdriver_devicemapper leaves out.
    ("1.25", {"plugin_tags": ("static_build",)}),
    ("1.26", {"cni_configs": ("11-crio-ipv4-bridge.conflist", "99-loopback.conflist")}),
    ("1.31", {"runtimes": ("crun", "runc")}),  # crun is the default since cri-o commit 5e21d495
    ("1.33", {"plugin_tags": ("no_dynamic_plugins",)}),
)


NEW_BUILDTAGS = ("containers_image_ostree_stub", "containers_image_openpgp", "exclude_graphdriver_btrfs", "exclude_graphdriver_devicemapper", "seccomp", "apparmor")


class CriO(Upstream):
    name = "cri-o"
    package = Package(
        "cri-o", "admin", "https://github.com/cri-o/cri-o", "The CRI-O Authors", 2016,
        "OCI-based implementation of the Kubernetes Container Runtime Interface",
        "CRI-O is a lightweight container runtime for Kubernetes. It implements the kubelet Container "
        "Runtime Interface (CRI) with OCI runtimes such as crun and runc, and uses conmon to monitor "
        "containers and CNI plugins for pod networking.\n\n"
        "This package contains crio and pinns, the settings of this build in "
        "/etc/crio/crio.conf.d/10-crio.conf (put your own in a later drop-in), /etc/crictl.yaml "
        "pointing at the CRI-O socket, bridge and loopback CNI network configurations, the systemd units "
        "with their options in /etc/default/crio, and a kernel check that warns at install time about "
        "kernel options CRI-O needs (python3 /usr/share/cri-o/kernel_check.py).",
    )  # fmt: skip
    licenses = (License("Apache-2.0", "LICENSE"),)
    version_command = ("crio", "--version")
    # What `doit new` reads from cri-o's tree besides go.mod and the companions' files: (path, pattern).
    version_source = ("internal/version/version.go", re.compile(r'const Version = "([^"]+)"'))
    pause_image_source = ("pkg/config/config_linux.go", re.compile(r'DefaultPauseImage\s+string\s*=\s*"([^"]+)"'))

    def new_pin_lines(self, version: str) -> list[str]:
        return ["# Pure-Go signature checks (no gpgme at run time); no btrfs or devicemapper graph drivers (overlay on a Pi);",
                "# apparmor, as upstream's Makefile adds it (hack/apparmor_tag.sh): crio applies AppArmor profiles where the kernel has it.",
                "buildtags = [" + ", ".join(f'"{t}"' for t in NEW_BUILDTAGS) + "]"]

    def build_packages(self, pin: Component) -> tuple[str, ...]:
        return ("libseccomp-dev", "libgpgme-dev", "libglib2.0-dev", "libsystemd-dev", "go-md2man")

    def check_recipe(self, recipe: Recipe) -> None:
        for name in ERAS.at(recipe.crio.version).runtimes:
            if name not in recipe.components:
                raise RecipeError(
                    f"{recipe.path}: missing key 'components.{name}'",
                    hint=f"CRI-O {recipe.crio.version} names the OCI runtimes {', '.join(ERAS.at(recipe.crio.version).runtimes)}: pin each",
                )

    def commands(self, recipe: Recipe, pin: Component) -> list[Command]:
        era = ERAS.at(pin.version)
        install_vars = [f"DESTDIR={OUT}", f"PREFIX={OUT}/usr", f"ETCDIR={OUT}/etc"]
        configs = " ".join(f"contrib/cni/{name}" for name in era.cni_configs)
        return [
            make("binaries", f"BUILDTAGS={' '.join(build_tags(pin))}"),
            write_file(f"{DROP_IN_BUILD_DIR}/10-crio.conf", drop_in(recipe, pin)),
            # crio.conf: what this crio makes of upstream's defaults and our drop-in (which it so validates).
            # `-d` again, not --config-dir: urfave/cli refuses two names of one flag, and the Makefile passes -d "".
            make("crio.conf", f"CONF_OVERRIDES=-d {DROP_IN_BUILD_DIR}"),
            make("docs", "GO_MD2MAN=go-md2man"),  # Debian's go-md2man, not one fetched or built by the Makefile
            make("install.bin-nobuild", "install.config-nobuild", "install.man-nobuild", "install.completions", "install.systemd", *install_vars),
            sh(f"install -D -m 644 {DROP_IN_BUILD_DIR}/10-crio.conf {OUT}/{DROP_IN}"),
            sh(f"install -D -m 644 -t {OUT}/etc/cni/net.d {configs}"),
            write_file(f"{OUT}/etc/default/crio", DEFAULTS),
            # Debian paths in the units: our binaries, and /etc/default rather than Red Hat's /etc/sysconfig.
            sh(f"sed -i --follow-symlinks -e 's|/usr/local/bin/crio|/usr/bin/crio|' -e 's|/etc/sysconfig/crio|/etc/default/crio|' {OUT}/usr/lib/systemd/system/*.service"),
        ]  # fmt: skip

    def relations(self, recipe: Recipe) -> dict[str, list[str]]:
        def at_least(name: str) -> str:
            return f"{COMPANIONS[name].package.name} (>= {recipe.components[name].debian_version.split('+git', 1)[0]}~)"

        runtimes = [at_least(name) for name in ERAS.at(recipe.crio.version).runtimes]
        return {
            # Our companions by their own names (which stand in for Debian's conmon and containernetworking-plugins):
            # apt installs the ones this release was built with, not the distribution's newer ones.
            "Depends": [*runtimes, at_least("conmon"), f"{at_least('cni-plugins')} | kubernetes-cni", "iptables", "conntrack"],
            # crictl for /etc/crictl.yaml; /etc/containers/policy.json, without which no image can be
            # pulled; python3 for the install-time kernel check.
            "Recommends": ["cri-tools", "golang-github-containers-common", "python3"],
        }  # fmt: skip

    def prepare_package(self, root: Path, recipe: Recipe) -> None:
        add_kernel_check(root)
        keep_alias(root / "usr/lib/systemd/system", "cri-o.service", "crio.service")

    def check_installed(self, box: Any, recipe: Recipe, what: str) -> None:
        """What crio makes of crio.conf and the drop-ins names programs these packages installed."""
        effective = tomllib.loads(box.output(["sh", "-c", "crio config 2>/dev/null"]))["crio"]  # its log goes to stderr
        runtime = effective.get("runtime", {})
        # Some releases print only what differs from their defaults (1.21 leaves out the runtime tables,
        # 1.24+ comments out a default default_runtime): what crio does not print, our drop-in says.
        ours = tomllib.loads(box.output(["cat", f"/{DROP_IN}"]))["crio"]["runtime"]
        handlers = runtime.get("runtimes") or ours["runtimes"]
        default = runtime.get("default_runtime") or ERAS.at(recipe.crio.version).runtimes[0]
        paths = [runtime.get("conmon", "")] + [p for h in handlers.values() for p in (h.get("runtime_path", ""), h.get("monitor_path", ""))]
        missing = [p for p in paths if p and box.container.exec_run(["test", "-x", p]).exit_code != 0]
        if missing or default not in handlers:
            why = f"it names {', '.join(missing)}, which no package installed" if missing else f"its default runtime {default!r} has no table"
            raise ContainerError(f"{what}: `crio config` is not what the packages installed because {why}", hint="see artifacts/<recipe>/logs/accept.log")
        box.say(f"crio config: default runtime {default}, " + ", ".join(f"{n} {h.get('runtime_path')}" for n, h in handlers.items()))

    def package_inputs(self) -> list[Path]:
        return [KERNEL_CHECK]

    def tarball_file(self, path: str, text: str, prefix: str, cnidir: str) -> str | None:
        return rewrite_crio_conf(text, prefix, cnidir) if path.startswith(CONFIGS) else None

    def check_tarball(self, recipe: Recipe, files: dict[str, bytes], prefix: str) -> None:
        if "etc/crio/crio.conf" not in files:
            raise PackageError(f"cannot package {recipe.name} because the cri-o staging tree has no etc/crio/crio.conf", hint=f"rebuild it: `doit compile:{recipe.name}:cri-o`")
        units = [data.decode() for path, data in files.items() if path.startswith("systemd/crio")]
        if not any(f"{prefix}/bin/crio" in unit for unit in units):
            raise PackageError(f"cannot package {recipe.name} because no staged crio unit starts {prefix}/bin/crio", hint="check usr/lib/systemd/system/crio.service in the cri-o staging tree")

    def maintainer_scripts(self, recipe: Recipe) -> dict[str, str]:
        subids = SUBIDS.format(names=" ".join(recipe.subid_ranges)) if recipe.subid_ranges else ""
        return {"postinst": POSTINST.format(version=recipe.crio.version, script=KERNEL_CHECK_PATH, subids=subids)}


def build_tags(pin: Component) -> list[str]:
    """The recipe's build tags, then the era's plugin_tags it does not already list."""
    return [*pin.buildtags, *(tag for tag in ERAS.at(pin.version).plugin_tags if tag not in pin.buildtags)]


def runtimes(recipe: Recipe) -> list[Runtime]:
    return [COMPANIONS[name].runtime for name in ERAS.at(recipe.crio.version).runtimes]  # type: ignore[misc]


def drop_in(recipe: Recipe, pin: Component) -> str:
    """/etc/crio/crio.conf.d/10-crio.conf: where our packages put things, and the recipe's choices."""
    era = ERAS.at(pin.version)
    handlers = runtimes(recipe)
    lines = [
        f"# CRI-O {pin.version} as packaged by criobuild (recipe {recipe.name}): where these packages put",
        "# conmon, the OCI runtimes and the CNI plugins, and the recipe's cgroup manager and pause image.",
        "# This file belongs to the cri-o package. Put your own settings in a drop-in that sorts after it,",
        "# such as /etc/crio/crio.conf.d/20-local.conf: CRI-O reads the drop-ins in order, later ones win.",
        "",
        "[crio.image]",
        f'pause_image = "{recipe.pause_image}"',
        "",
        "[crio.runtime]",
        f'cgroup_manager = "{recipe.cgroup_manager}"',
        f'conmon_cgroup = "{conmon_cgroup(recipe.cgroup_manager)}"',
        f'default_runtime = "{handlers[0].name}"',
    ]
    if not era.monitor_path:
        lines.append(f'conmon = "{conmon.PATH}"')
    for runtime in handlers:
        lines += ["", f"[crio.runtime.runtimes.{runtime.name}]", f'runtime_path = "{runtime.path}"', 'runtime_type = "oci"', f'runtime_root = "{runtime.root}"']
        if era.monitor_path:
            lines.append(f'monitor_path = "{conmon.PATH}"')
    lines += ["", "[crio.network]", "plugin_dirs = [" + ", ".join(f'"{d}"' for d in PLUGIN_DIRS) + "]"]
    return "\n".join(lines) + "\n"


def conmon_cgroup(cgroup_manager: str) -> str:
    """Where crio puts conmon: with cgroupfs crio refuses "system.slice", so conmon goes into the pod's cgroup."""
    return "system.slice" if cgroup_manager == "systemd" else "pod"


# /etc/default/crio, the units' EnvironmentFile: upstream's contrib/sysconfig/crio names the variables
# without saying what they are for.
DEFAULTS = """\
# /etc/default/crio: options added to crio's command line by crio.service and crio-wipe.service.
# See crio(8) for the options. Configuration is better kept in a drop-in such as
# /etc/crio/crio.conf.d/20-local.conf, which crio reads after this package's 10-crio.conf.
# After a change: sudo systemctl restart crio

# Where the configuration is read from, logging: e.g. --log-level=debug
#CRIO_CONFIG_OPTIONS=
# OCI runtime options: e.g. --default-runtime=runc
#CRIO_RUNTIME_OPTIONS=
# Image and container storage: e.g. --root, --runroot, --storage-driver
#CRIO_STORAGE_OPTIONS=
# CNI: e.g. --cni-config-dir, --cni-plugin-dir
#CRIO_NETWORK_OPTIONS=
# Prometheus metrics: e.g. --enable-metrics --metrics-port=9090
#CRIO_METRICS_OPTIONS=
"""

POSTINST = """\
#!/bin/sh
set -e

{subids}# Warn (never fail) when the running kernel lacks an option CRI-O {version} needs.
if [ "$1" = "configure" ] && command -v python3 >/dev/null 2>&1; then
\tpython3 /{script} --quiet-warn --crio-version {version} || true
fi

#DEBHELPER#

exit 0
"""


def rewrite_crio_conf(text: str, prefix: str, cnidir: str) -> str:
    """Point a crio.conf or drop-in at programs under prefix (the release tarball's) and CNI plugins in cnidir."""
    text = CONF_PATH_RE.sub(lambda m: f"{m.group('lead')}{prefix}/{m.group('dir')}/", text)
    return PLUGIN_DIRS_RE.sub(lambda m: f'{m.group("lead")}[\n\t"{cnidir}",\n]', text)


# The recipe's config.subid_ranges: CRI-O's user namespaces (and Sysbox) take ids from the `containers`
# range. Each name gets 65536 uids and gids after the highest range already given, so none overlaps;
# a name that has a range keeps it. Left in place on removal: files may be owned by those ids.
SUBIDS = """\
if [ "$1" = "configure" ]; then
\tfor name in {names}; do
\t\tfor file in /etc/subuid /etc/subgid; do
\t\t\t[ -e "$file" ] || touch "$file"
\t\t\tif ! grep -q "^$name:" "$file"; then
\t\t\t\tstart=$(awk -F: 'BEGIN {{ next_free = 100000 }} NF >= 3 && $2 + $3 > next_free {{ next_free = $2 + $3 }} END {{ print next_free }}' "$file")
\t\t\t\techo "$name:$start:65536" >> "$file"
\t\t\tfi
\t\tdone
\tdone
fi

"""


def add_kernel_check(root: Path) -> None:
    """builders/kernel_check.py, with the interpreter Debian policy asks for."""
    text = KERNEL_CHECK.read_text()
    if text.startswith("#!"):
        text = text.split("\n", 1)[1]
    script = root / KERNEL_CHECK_PATH
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/usr/bin/python3\n" + text)
    script.chmod(0o755)


def keep_alias(units: Path, alias: str, unit: str) -> None:
    """Upstream's `make install.systemd` links cri-o.service -> crio.service (1.18's unit has no Alias=);
    dh_installsystemd takes such a symlink as an alias. A copy (e.g. left by `sed -i`) becomes the link again."""
    path = units / alias
    if path.is_file() and not path.is_symlink() and path.read_bytes() == (units / unit).read_bytes():
        path.unlink()
        path.symlink_to(unit)


UPSTREAM = CriO()
