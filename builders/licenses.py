"""Licences: what each upstream says it is licensed under, checked against its own licence file at the pinned
commit, and written the two ways a user reads it: debian/copyright (Debian's short names, with a pointer to
/usr/share/common-licenses) and the SBOMs (SPDX licence expressions).

A component module states its licences (builders/components/base.py License); a build refuses a checkout whose
licence file is another licence's text. The text says which licence and version; whether a GPL is "only" or
"or later" is the source's own statement (its file headers), which the module records.
"""
from __future__ import annotations

import hashlib
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SourceError

if TYPE_CHECKING:
    from .components.base import License, Upstream


@dataclass(frozen=True)
class Text:
    """One licence text as SPDX and Debian name it."""

    opening: str  # the words its text opens with (whitespace-normalised), as upstream's LICENSE/COPYING has it
    debian: str  # Debian's short name (copyright-format 1.0) and its file under /usr/share/common-licenses
    title: str  # its name in a sentence
    version: str


TEXTS = {
    "Apache-2.0": Text("Apache License Version 2.0, January 2004", "Apache-2.0", "the Apache License", "2.0"),
    "GPL-2.0": Text("GNU GENERAL PUBLIC LICENSE Version 2, June 1991", "GPL-2", "the GNU General Public License", "2"),
    "GPL-3.0": Text("GNU GENERAL PUBLIC LICENSE Version 3, 29 June 2007", "GPL-3", "the GNU General Public License", "3"),
    "LGPL-2.1": Text("GNU LESSER GENERAL PUBLIC LICENSE Version 2.1, February 1999", "LGPL-2.1", "the GNU Lesser General Public License", "2.1"),
    "LGPL-3.0": Text("GNU LESSER GENERAL PUBLIC LICENSE Version 3, 29 June 2007", "LGPL-3", "the GNU Lesser General Public License", "3"),
}
SUFFIXES = ("-or-later", "-only")


def text_of(spdx: str) -> tuple[Text, bool]:
    """The licence text an SPDX identifier names, and whether it is "or later"."""
    base = spdx
    for suffix in SUFFIXES:
        base = base.removesuffix(suffix)
    return TEXTS[base], spdx.endswith("-or-later")


def identify(text: str) -> str | None:
    """The SPDX licence (without -only/-or-later) whose text this is, judged by its opening words."""
    opening = " ".join(text.split()[:40])
    return next((spdx for spdx, known in TEXTS.items() if known.opening in opening), None)


def expression(licenses: tuple[License, ...]) -> str:
    """The SPDX licence expression of an upstream (its licences joined with AND)."""
    return " AND ".join(dict.fromkeys(lic.spdx for lic in licenses))


def check_licenses(upstream: Upstream, tree: Path, what: str) -> list[dict[str, str]]:
    """Each licence the upstream's module states, found in its licence file in tree; what the staging manifest records."""
    found = []
    for lic in upstream.licenses:
        path = tree / lic.file
        module = f"builders/components/{type(upstream).__module__.rsplit('.', 1)[-1]}.py"
        if not path.is_file():
            raise SourceError(f"checking the licence of {what} failed because it has no {lic.file}", hint=f"read the licence at the pinned commit and correct `licenses` in {module}")
        data = path.read_bytes()
        actual = identify(data.decode(errors="replace"))
        wanted = lic.spdx
        for suffix in SUFFIXES:
            wanted = wanted.removesuffix(suffix)
        if actual != wanted:
            said = f"the text of {actual}" if actual else f"no licence text this tool knows ({', '.join(TEXTS)})"
            raise SourceError(
                f"checking the licence of {what} failed because its {lic.file} is {said}, and {module} says {lic.spdx}",
                hint=f"read {lic.file} at the pinned commit and correct `licenses` in {module}; the packages and SBOMs say what it says",
            )
        found.append({"license": lic.spdx, "files": lic.files, "file": lic.file, "sha256": hashlib.sha256(data).hexdigest()})
    return found


def debian_name(spdx: str) -> str:
    text, later = text_of(spdx)
    return text.debian + ("+" if later else "")


def copyright_paragraphs(licenses: tuple[License, ...], copyright: str) -> str:
    """debian/copyright's Files paragraphs (the first covers *) and one License paragraph per licence."""
    files = [f"Files: {lic.files}\nCopyright: {copyright}\nLicense: {debian_name(lic.spdx)}\n" for lic in licenses]
    stanzas = [license_paragraph(spdx) for spdx in dict.fromkeys(lic.spdx for lic in licenses)]
    return "\n".join(files + stanzas)


def license_paragraph(spdx: str) -> str:
    text, later = text_of(spdx)
    if text.debian == "Apache-2.0":
        grant = (
            'Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in '
            "compliance with the License. You may obtain a copy of the License at https://www.apache.org/licenses/LICENSE-2.0"
        )
    else:
        grant = (
            f"This program is free software; you can redistribute it and/or modify it under the terms of {text.title} "
            f"as published by the Free Software Foundation; {'either ' if later else ''}version {text.version} of the License"
            + (", or (at your option) any later version." if later else ".")
        )
    where = f'On Debian systems, the complete text of {text.title}, version {text.version}, can be found in "/usr/share/common-licenses/{text.debian}".'
    return f"License: {debian_name(spdx)}\n" + wrap(grant) + " .\n" + wrap(where)


def wrap(paragraph: str) -> str:
    return "".join(f" {line}\n" for line in textwrap.wrap(paragraph, width=88, break_long_words=False, break_on_hyphens=False))

