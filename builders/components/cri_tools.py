"""kubernetes-sigs/cri-tools: crictl, the CRI command-line client, and critest, the CRI validation suite."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import OUT, Command, Eras, License, Package, Upstream, help2man, make, sh

if TYPE_CHECKING:
    from ..recipe import Component, Recipe


@dataclass(frozen=True)
class Era:
    output: str  # where `make crictl critest` leaves them ($GOARCH: the target's)


ERAS = Eras(
    Era(output="_output"),
    ("1.21", {"output": "build/bin"}),
    ("1.27", {"output": "build/bin/linux/$GOARCH"}),
)


# critest before 1.24 has no -test-images-file: its specs run this image (docker.io/library + busybox:1.28).
CRITEST_DEFAULT_IMAGE = "docker.io/library/busybox:1.28"


class CriTools(Upstream):
    name = "cri-tools"
    package = Package(
        "cri-tools", "admin", "https://github.com/kubernetes-sigs/cri-tools", "The Kubernetes Authors", 2017,
        "command-line client for Kubernetes Container Runtime Interface runtimes",
        "crictl inspects and debugs container runtimes that implement the kubelet Container Runtime "
        "Interface (CRI), such as CRI-O: it lists, starts and stops pods and containers, pulls images, "
        "and shows logs and statistics.\n\n"
        "critest, the CRI validation test suite, checks that a runtime implements the interface as the "
        "kubelet expects.",
    )  # fmt: skip
    licenses = (License("Apache-2.0", "LICENSE"),)
    version_command = ("crictl", "--version")
    named_in = (("scripts/versions", "cri-tools"), ("contrib/test/ci/vars.yml", "cri_tools_git_version"))

    def build_packages(self, pin: Component) -> tuple[str, ...]:
        return ("help2man",)

    def commands(self, recipe: Recipe, pin: Component) -> list[Command]:
        output = ERAS.at(pin.version).output.replace("$GOARCH", recipe.target.arch.to_go())
        return [
            make("crictl", "critest"),
            sh(f"install -D -m 755 -t {OUT}/usr/bin {output}/crictl {output}/critest"),
            help2man("crictl", "1", "client for CRI runtimes"),
        ]


UPSTREAM = CriTools()
