"""Decide, one tar member at a time, whether extracting it is safe.

This is the policy half of extraction, kept free of I/O so it can be tested
exhaustively (the same idea as PEP 706's extraction filters). The extractor asks
:func:`judge` about every member before touching the disk and fails the whole
archive on the first problem: a half-trusted archive is not worth keeping.

The rules, for an archive extracted into its own folder:

* names must be relative and stay inside the folder after normalisation;
* only regular files, folders, symlinks and hard links are allowed (no device
  nodes, fifos or other special types);
* a symlink's target, resolved from the link's own folder, must stay inside;
* a hard link must point at a regular file this archive already wrote;
* nothing may be written at or below a path where the archive put a symlink
  (that is how "write through a link" attacks reach outside).

Because lexical checks cannot see every symlink chain, the extractor also
verifies every link it created against the real filesystem once the archive is
done (:func:`link_escapes`).
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Seen:
    """What earlier members of the same archive created (relative POSIX paths)."""

    files: set[str] = field(default_factory=set)
    symlinks: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Verdict:
    """Either a normalised relative path to create, or the reason not to."""

    path: str | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _reject(reason: str) -> Verdict:
    return Verdict(path=None, problem=reason)


def normalise(name: str) -> str | None:
    """Relative, normalised POSIX path for a member name, or None if it escapes.

    Returns ``""`` for the archive root itself (``.`` or ``./``).
    """
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":"):
        return None
    norm = posixpath.normpath(name)
    if norm == ".":
        return ""
    if norm == ".." or norm.startswith("../"):
        return None
    return norm


def _under_symlink(path: str, symlinks: set[str]) -> str | None:
    """The first symlink among ``path`` and its parents, if any."""
    if not symlinks:
        return None
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if prefix in symlinks:
            return prefix
    return None


#: Largest size a member may declare: 2**63 - 1, the most any filesystem stores (and
#: far past the default --max-bytes, which then names the real limit).
MAX_MEMBER_SIZE = 2**63 - 1


def judge(member: tarfile.TarInfo, seen: Seen) -> Verdict:
    """Is it safe to extract ``member`` given what the archive already created?"""
    name = member.name
    if "\x00" in name:
        return _reject(f"member name {name!r} contains a NUL byte")
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":"):
        return _reject(f"member {name!r} has an absolute path")
    path = normalise(name)
    if path is None:
        return _reject(f"member {name!r} climbs out of the archive folder with '..'")

    if member.size < 0 or member.size > MAX_MEMBER_SIZE:
        # tarfile takes a PAX ``size`` as written: a negative one would credit the
        # bomb guard's running total, and a huge one is no real file.
        return _reject(f"member {name!r} declares an impossible size of {member.size} bytes")
    if member.sparse is not None and any(
        offset < 0 or length < 0 for offset, length in member.sparse
    ):
        return _reject(f"member {name!r} has a sparse map with negative offsets or lengths")

    if member.ischr() or member.isblk():
        return _reject(f"member {name!r} is a device node")
    if member.isfifo():
        return _reject(f"member {name!r} is a fifo")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        return _reject(f"member {name!r} has an unsupported type {member.type!r}")

    if path == "":
        if member.isdir():
            return Verdict(path="")
        return _reject(f"member {name!r} would replace the archive folder itself")

    link = _under_symlink(path, seen.symlinks)
    if link is not None:
        if link == path:
            return _reject(f"member {name!r} would overwrite the symlink {link!r}")
        return _reject(f"member {name!r} would be written through the symlink {link!r}")

    if member.issym():
        target = member.linkname
        if not target:
            return _reject(f"symlink {name!r} has an empty target")
        if target.startswith("/") or (len(target) >= 2 and target[1] == ":"):
            return _reject(f"symlink {name!r} points to the absolute path {target!r}")
        resolved = normalise(posixpath.join(posixpath.dirname(path), target))
        if resolved is None:
            return _reject(f"symlink {name!r} -> {target!r} points outside the archive folder")
        if resolved == "" or resolved == path or path.startswith(resolved + "/"):
            # Links to an ancestor make loops and let later links climb further
            # than their text suggests; no real run needs them.
            return _reject(f"symlink {name!r} -> {target!r} points at a folder that contains it")
    elif member.islnk():
        target = member.linkname
        if target.startswith("/") or (len(target) >= 2 and target[1] == ":"):
            return _reject(f"hard link {name!r} points to the absolute path {target!r}")
        resolved = normalise(target)
        if resolved is None:
            return _reject(f"hard link {name!r} -> {target!r} points outside the archive folder")
        if resolved == path:
            return _reject(f"hard link {name!r} points at itself")
        if resolved not in seen.files:
            return _reject(
                f"hard link {name!r} -> {target!r} does not point at a file of this archive"
            )
    return Verdict(path=path)


def safe_mode(member: tarfile.TarInfo) -> int:
    """Permissions to give an extracted entry: no setuid/setgid/sticky, owner can write."""
    if member.isdir():
        return 0o755
    return 0o755 if member.mode & 0o111 else 0o644


def link_escapes(root: Path, link: Path) -> bool:
    """Does the symlink ``link`` (inside ``root``) resolve to a place outside ``root``?"""
    real_root = os.path.realpath(root)
    target = os.path.realpath(link)
    return not (target == real_root or target.startswith(real_root + os.sep))
