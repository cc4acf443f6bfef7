"""Downloads that are pinned by sha256: streamed to a temporary name, verified, renamed at the end.

A file at its final name is always complete and verified; anything interrupted (an error, Ctrl-C, a
short body) is deleted, and a leftover from a killed process carries a `.partial` suffix and its pid that the next
run discards. There is no resume: a download starts clean.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import requests
import urllib3.exceptions

from .errors import BuildError, ChecksumError, DownloadError
from .files import file_atomically
from .view import transfer

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 60.0  # seconds to connect, and between two reads
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def http_timeout(env: dict[str, str] | None = None) -> float:
    """CRIOBUILD_HTTP_TIMEOUT (seconds), else 60: the limit to connect and between two reads."""
    env = os.environ if env is None else env
    raw = env.get("CRIOBUILD_HTTP_TIMEOUT")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise BuildError(f"CRIOBUILD_HTTP_TIMEOUT={raw!r} is not a timeout", hint="set it to a number of seconds, e.g. 60, or unset it")
    return value


def partial_name(dest: Path) -> str:
    """The prefix of the temporary names `download` uses for dest (so callers can discard leftovers)."""
    return f".{dest.name}."


def download(url: str, dest: Path, *, sha256: str, describe_mirror: str, timeout: float | None = None) -> None:
    """Fetch url to dest, which appears only once its content matches sha256.

    describe_mirror says which mirror setting is in force and how to change it; it becomes the hint
    of every error.
    """
    if not SHA256_RE.match(sha256):
        raise ValueError(f"not a lower-case sha256: {sha256!r}")
    timeout = http_timeout() if timeout is None else timeout
    with file_atomically(dest, "wb") as (out, _):
        actual, size = stream(url, out, timeout=timeout, describe_mirror=describe_mirror)
        out.flush()
        os.fsync(out.fileno())
        if actual != sha256:
            raise ChecksumError(
                f"{dest.name} downloaded from {url} was rejected because its sha256 does not match the pin: "
                f"expected {sha256}, got {actual} ({size} bytes; the download was deleted)",
                hint=f"{describe_mirror}. If the file is genuine and the pin is wrong, correct the pinned sha256",
            )


def stream(url: str, out, *, timeout: float, describe_mirror: str) -> tuple[str, int]:
    """Copy url's body to out; returns (sha256, bytes). Raises DownloadError naming the url."""
    digest = hashlib.sha256()
    received = 0
    expected: int | None = None

    def fail(why: str) -> DownloadError:
        return DownloadError(f"download of {url} failed because {why}", hint=describe_mirror)

    try:
        with requests.get(url, stream=True, timeout=(timeout, timeout), headers={"Accept-Encoding": "identity"}) as response:
            if response.status_code != 200:
                raise fail(f"the server answered {response.status_code} {response.reason}")
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            with transfer(url.rsplit("/", 1)[-1], expected) as advance:
                # raw bytes: a server that labels a .tar.gz `Content-Encoding: gzip` must not get it unpacked
                for chunk in response.raw.stream(CHUNK, decode_content=False):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    advance(len(chunk))
    except DownloadError:
        raise
    except (requests.Timeout, urllib3.exceptions.TimeoutError):
        raise fail(f"the server did not answer within {timeout:g} s (CRIOBUILD_HTTP_TIMEOUT)") from None
    except requests.ConnectionError as e:
        raise fail(connection_reason(e, timeout)) from None
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.IncompleteRead, requests.exceptions.ChunkedEncodingError):
        raise fail(f"the connection closed after {received} of {expected or 'unknown'} bytes (the partial file was deleted)") from None
    except requests.RequestException as e:
        raise fail(f"of {type(e).__name__}: {e}") from None
    if expected is not None and received != expected:
        raise fail(f"the body ended after {received} of {expected} bytes (the partial file was deleted)")
    return digest.hexdigest(), received


def connection_reason(error: requests.ConnectionError, timeout: float) -> str:
    text = str(error)
    if isinstance(error, requests.ConnectTimeout) or "timed out" in text.lower():
        return f"the server did not answer within {timeout:g} s (CRIOBUILD_HTTP_TIMEOUT)"
    if "Connection refused" in text:
        return "the connection was refused (nothing listens there)"
    if "Name or service not known" in text or "Temporary failure in name resolution" in text or "NameResolution" in text:
        return "its host name does not resolve (no network or no DNS?)"
    if "Network is unreachable" in text or "No route to host" in text:
        return "the network is unreachable from here"
    return f"the connection failed: {text}"


