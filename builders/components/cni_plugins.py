"""containernetworking/plugins: the reference CNI plugins, built with upstream's build_linux.sh."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import CNI_DIR, OUT, Command, License, Package, Upstream, sh, stands_in_for

if TYPE_CHECKING:
    from ..recipe import Component, Recipe

VERSION_VARIABLE = "github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion"


class CniPlugins(Upstream):
    name = "cni-plugins"
    package = Package(
        "cri-o-cni-plugins", "admin", "https://github.com/containernetworking/plugins", "The CNI Authors", 2015,
        "Container Network Interface plugins, the version CRI-O was tested with",
        "Reference plugins of the Container Network Interface (CNI) project: interface plugins such as "
        "bridge, loopback, ptp, macvlan and host-device, IP address management plugins such as host-local, "
        "dhcp and static, and chained plugins such as portmap, bandwidth, firewall and tuning.\n\n"
        "The plugins are installed in /usr/lib/cni, where Debian keeps them. These are the plugins this "
        "CRI-O release was built and tested with. They take the place of the distribution's "
        "containernetworking-plugins package (same files, which they provide, conflict with and "
        "replace), so apt keeps them even where the distribution's are newer.",
        former_names=("containernetworking-plugins",),
    )  # fmt: skip
    licenses = (License("Apache-2.0", "LICENSE"),)
    named_in = (("scripts/versions", "cni-plugins"), ("contrib/test/ci/build/plugins.yml", "version"))

    def commands(self, recipe: Recipe, pin: Component) -> list[Command]:
        return [
            Command(["./build_linux.sh", "-ldflags", f"-X {VERSION_VARIABLE}=v{pin.version}"]),
            sh(f"install -D -m 755 -t {OUT}{CNI_DIR} bin/*"),
        ]

    def relations(self, recipe: Recipe) -> dict[str, list[str]]:
        # Like Debian's own containernetworking-plugins: portmap and friends run iptables, and
        # golang-github-containers-common (policy.json, recommended by cri-o) asks for a network stack.
        debian = stands_in_for("containernetworking-plugins")
        return debian | {"Depends": ["iptables"], "Provides": [*debian["Provides"], "container-network-stack (= 1)"]}


UPSTREAM = CniPlugins()
