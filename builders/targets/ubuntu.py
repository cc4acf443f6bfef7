"""Ubuntu Server for the Pi. Its mirror (ports.ubuntu.com for arm64 and armhf) is not reachable from our
machines: its targets are built in the GitHub workflow, which pulls ubuntu:<suite> images."""
from __future__ import annotations

MIRROR = "http://ports.ubuntu.com/ubuntu-ports"
# suite -> (version, debhelper installs units from /usr/lib/systemd/system): jammy's debhelper 13.6
# knows /lib/systemd/system only; noble's 13.14 reads /usr/lib/systemd/system too.
RELEASES = {
    "jammy": ("22.04", False),
    "noble": ("24.04", True),
}


def version_tag(version: str) -> str:
    return f"ubuntu{version}"
