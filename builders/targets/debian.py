"""Debian: the releases Raspberry Pi OS is built on (bullseye, bookworm, and trixie today)."""
from __future__ import annotations

MIRROR = "http://deb.debian.org/debian"
# suite -> (version, debhelper installs units from /usr/lib/systemd/system). bookworm's debhelper 13.11
# handles only /lib/systemd/system (checked); trixie is merged-/usr and its debhelper reads /usr.
RELEASES = {
    "bullseye": ("11", False),
    "bookworm": ("12", False),
    "trixie": ("13", True),
}


def version_tag(version: str) -> str:
    return f"deb{version}"
