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
import stat
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


class _Tree:
    """Creates folders and files below one root, remembering the folders it made.

    Remembering matters for speed (archives hold thousands of files in a few
    folders, and a mkdir + stat per path component per file was a fifth of the
    CPU time) and is safe because a folder, once made, can never be replaced by
    a link or a file later in the same archive (the policy rejects both).
    """

    def __init__(self, root: Path) -> None:
        self.root = os.fspath(root)
        self.made: set[str] = {""}

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def makedirs(self, rel: str) -> None:
        if rel in self.made:
            return
        parent = rel.rpartition("/")[0]
        self.makedirs(parent)
        path = self.path(rel)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise ItemError(
                    f"archive puts a folder at {rel!r} where a file already is"
                ) from None
        self.made.add(rel)

    def parent_of(self, rel: str) -> None:
        self.makedirs(rel.rpartition("/")[0])

    def clear(self, rel: str) -> None:
        """Make room for a new entry at ``rel``: tar lets a later member replace an earlier file."""
        path = self.path(rel)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode):
            raise ItemError(f"archive puts a file or link at {rel!r} where a folder already is")
        os.unlink(path)

    def write_file(self, rel: str, src: BinaryIO, size: int, mode: int) -> None:
        self.parent_of(rel)
        path = self.path(rel)
        try:
            fd = os.open(path, _O_WRITE, mode)
        except FileExistsError:
            self.clear(rel)
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
    tree = _Tree(dest)
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
                    tree.write_file(rel, src, member.size, safe_mode(member))
                    seen.files.add(rel)
                elif member.isdir():
                    tree.makedirs(rel)
                elif member.issym():
                    tree.parent_of(rel)
                    tree.clear(rel)
                    os.symlink(member.linkname, tree.path(rel))
                    seen.symlinks.add(rel)
                    seen.files.discard(rel)
                    links.append(dest / rel)
                else:  # hard link to an earlier regular file of this archive
                    tree.parent_of(rel)
                    tree.clear(rel)
                    target = tree.path(os.path.normpath(member.linkname))
                    os.link(target, tree.path(rel), follow_symlinks=False)
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
        if exc.errno is None:
            raise  # not the filesystem (e.g. gzip's BadGzipFile): the caller classifies it
        # Anything else the filesystem refuses (odd member orders, names too long...) is
        # this archive's problem, reported as such; the run goes on.
        raise ItemError(f"cannot extract: {exc.strerror or exc}") from None
    for link in links:
        if link_escapes(dest, link):
            raise ItemError(
                f"unsafe archive: symlink {link.relative_to(dest)} resolves outside the archive folder"
            )
    return stats
