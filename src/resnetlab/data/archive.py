"""Tar archives (.tar, .tar.gz, .tgz) read in place: member names, one sequential pass for the
members wanted, and the one error a damaged archive gives."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

from ..errors import ResnetlabError


def normalize_member(name: str) -> str:
    """A tar member name without "./", empty parts ("test//x") or trailing slashes."""
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith((".tar", ".tar.gz", ".tgz"))


def tar_error(path: Path, e: Exception) -> ResnetlabError:
    return ResnetlabError(f"{path}: damaged or unreadable archive ({type(e).__name__}: {e}); delete it "
                          f"and download it again")


def read_tar_members(path: Path, wanted: set[str]) -> dict[str, bytes]:
    """The bytes of the members named in `wanted` (normalized names), in one sequential pass."""
    found = {}
    try:
        with tarfile.open(path, "r|*") as tar:  # streaming: a .tar.gz is decompressed once
            for member in tar:
                name = normalize_member(member.name)
                if member.isfile() and name in wanted:
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise tar_error(path, e) from None
    return found
