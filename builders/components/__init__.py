"""What the tool knows about each upstream: one module each (cibuildwheel's platforms/, mkosi's distributions/).

builders/build.py, deb.py, tarball.py and acceptance.py ask these modules and name no component
themselves. The order here is the order of a recipe's components, of its tasks and of its packages.
"""
from __future__ import annotations

from . import cni_plugins, conmon, cri_o, cri_tools, crun, runc
from .base import Command, Package, Runtime, Upstream

UPSTREAMS: dict[str, Upstream] = {
    u.name: u for u in (cri_o.UPSTREAM, conmon.UPSTREAM, cni_plugins.UPSTREAM, cri_tools.UPSTREAM, runc.UPSTREAM, crun.UPSTREAM)
}
REQUIRED = tuple(name for name, u in UPSTREAMS.items() if u.required)


def upstream(name: str) -> Upstream:
    return UPSTREAMS[name]


__all__ = ["Package", "REQUIRED", "Runtime", "Command", "UPSTREAMS", "Upstream", "upstream"]
