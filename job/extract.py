"""Stream a tar archive into a fresh folder, member by member, under the safety policy.

The archive is read once, sequentially (tarfile's ``r|`` stream mode), straight
from the decompressor, so nothing but the current chunk is held in memory and no
compressed copy touches the disk. Every member is vetted by
:func:`job.safety.judge` before anything is created; any problem raises
:class:`~job.errors.ItemError` and the caller throws the whole folder away.
"""

from __future__ import annotations

import errno
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from job.errors import ItemError
from job.safety import Seen, judge, link_escapes, safe_mode
from job.signals import stop_requested

CHUNK = 1 << 20
_O_WRITE = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_members: int


@dataclass
class ExtractStats:
    members: int = 0
    bytes: int = 0


class _StopReading(Exception):
    pass


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _makedirs(root: Path, rel: str) -> None:
    """Create ``root/rel`` folder by folder, refusing to follow any symlink."""
    current = root
    for part in rel.split("/"):
        current = current / part
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            if current.is_symlink() or not current.is_dir():
                raise ItemError(
                    f"archive puts a folder at {rel!r} where a file already is"
                ) from None


def _write_file(root: Path, rel: str, src: BinaryIO, size: int, mode: int) -> None:
    parent, _, _ = rel.rpartition("/")
    if parent:
        _makedirs(root, parent)
    path = root / rel
    if path.is_symlink() or path.exists():
        if path.is_dir() and not path.is_symlink():
            raise ItemError(f"archive puts a file at {rel!r} where a folder already is")
        path.unlink()  # tar semantics: a later member replaces an earlier one
    fd = os.open(path, _O_WRITE, mode)
    written = 0
    with os.fdopen(fd, "wb", buffering=0) as out:
        while written < size:
            if stop_requested():
                raise _StopReading
            chunk = src.read(min(CHUNK, size - written))
            if not chunk:
                raise ItemError(f"archive is truncated inside member {rel!r}")
            out.write(chunk)
            written += len(chunk)


def extract_stream(stream: BinaryIO, dest: Path, limits: Limits) -> ExtractStats:
    """Extract the uncompressed tar ``stream`` into the existing empty folder ``dest``.

    Returns counts; raises ItemError for unsafe, corrupt or oversized archives.
    Raises :class:`job.errors.Cancelled` if a stop was requested mid-way.
    """
    from job.errors import Cancelled

    stats = ExtractStats()
    seen = Seen()
    links: list[Path] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tar:
            for member in tar:
                if stop_requested():
                    raise _StopReading
                stats.members += 1
                if stats.members > limits.max_members:
                    raise ItemError(
                        f"archive has more than {limits.max_members} members "
                        "(raise --max-members if this is expected)"
                    )
                verdict = judge(member, seen)
                if not verdict.ok:
                    raise ItemError(f"unsafe archive: {verdict.problem}")
                rel = verdict.path
                assert rel is not None
                if member.isreg():
                    stats.bytes += member.size
                    if stats.bytes > limits.max_bytes:
                        raise ItemError(
                            f"archive would extract more than {_human(limits.max_bytes)} "
                            "(raise --max-bytes if this is expected)"
                        )
                    src = tar.extractfile(member)
                    assert src is not None
                    _write_file(dest, rel, src, member.size, safe_mode(member))
                    seen.files.add(rel)
                elif member.isdir():
                    if rel:
                        _makedirs(dest, rel)
                elif member.issym():
                    parent = rel.rpartition("/")[0]
                    if parent:
                        _makedirs(dest, parent)
                    path = dest / rel
                    if path.is_dir() and not path.is_symlink():
                        raise ItemError(
                            f"archive puts a symlink at {rel!r} where a folder already is"
                        )
                    path.unlink(missing_ok=True)
                    os.symlink(member.linkname, path)
                    seen.symlinks.add(rel)
                    seen.files.discard(rel)
                    links.append(path)
                else:  # hard link to an earlier regular file of this archive
                    parent = rel.rpartition("/")[0]
                    if parent:
                        _makedirs(dest, parent)
                    path = dest / rel
                    path.unlink(missing_ok=True)
                    os.link(dest / os.path.normpath(member.linkname), path, follow_symlinks=False)
                    seen.files.add(rel)
    except _StopReading:
        raise Cancelled() from None
    except ItemError:
        raise
    except tarfile.ReadError as exc:
        raise ItemError(f"not a valid tar archive: {exc}") from None
    except EOFError as exc:
        raise ItemError(f"archive is truncated: {exc}") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ItemError(
                f"no space left on the output drive while extracting ({exc.filename})"
            ) from None
        if exc.errno == errno.EFBIG:
            raise ItemError(
                "file too large for the output drive (file-size limit reached)"
            ) from None
        raise
    for link in links:
        if link_escapes(dest, link):
            raise ItemError(
                f"unsafe archive: symlink {link.relative_to(dest)} resolves outside the archive folder"
            )
    return stats
