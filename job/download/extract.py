"""Stream a tar archive into a fresh folder, member by member, under the safety policy.

The archive is read once, sequentially, straight from the decompressor, so
nothing but one reusable buffer is held in memory and no compressed copy touches
the disk. Every member is vetted by :func:`job.download.safety.judge` before anything is
created; any problem raises :class:`~job.core.errors.ItemError` and the caller throws
the whole folder away.

Why not ``tarfile``'s own stream mode: it copies every byte of member data three
or four times through short-lived megabyte ``bytes`` objects while holding the
GIL, which made extraction the job's bottleneck (see docs/PERFORMANCE.md). Here
the decompressor writes into one ``bytearray`` and member data goes from that
buffer to ``os.write`` as memoryview slices, so the per-byte work is done by
ISA-L and the kernel with the GIL released, and threads extracting different
archives really run in parallel. Header parsing is still ``tarfile``'s
(:meth:`tarfile.TarInfo.fromtarfile`), so PAX, GNU long names and sparse maps are
understood exactly as the standard library understands them, and end-of-archive
and damaged-header handling follows ``TarFile.next``.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from job.core.errors import Cancelled, ItemError
from job.core.signals import stop_requested
from job.download.names import check_member_path
from job.download.safety import Seen, judge, link_escapes, safe_mode

CHUNK = 1 << 20
# Longest PAX/GNU extended header accepted. Real ones hold a path or a few
# attributes; a forged size would otherwise make tarfile allocate it in one read.
MAX_HEADER_BYTES = 8 << 20
_O_WRITE = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class Readable(Protocol):
    def readinto(self, buffer: memoryview) -> int | None: ...


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


class TarSource:
    """Forward-only view of the uncompressed tar stream through one reusable buffer.

    It is also the ``fileobj`` that ``TarInfo.fromtarfile`` reads headers from
    (``read`` and ``tell``), so header parsing and data copying share one
    position and can never disagree about where a member starts.
    """

    def __init__(self, stream: Readable, size: int = CHUNK) -> None:
        self._stream = stream
        self._view = memoryview(bytearray(size))
        self._pos = 0
        self._end = 0
        self._consumed = 0  # bytes before self._view[0]
        self.eof = False

    def _fill(self) -> bool:
        """Refill the (fully consumed) buffer; False at the end of the stream."""
        if self.eof:
            return False
        if stop_requested():
            raise _StopReading
        self._consumed += self._end
        n = self._stream.readinto(self._view) or 0
        self._pos, self._end = 0, n
        if n == 0:
            self.eof = True
        return n > 0

    def tell(self) -> int:
        return self._consumed + self._pos

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (fewer only at the end): for headers, never member data."""
        if size < 0 or size > MAX_HEADER_BYTES:
            raise ItemError(
                f"archive has a tar extended header of {size} bytes "
                f"(more than {_human(MAX_HEADER_BYTES)}); it is damaged or forged"
            )
        if self._end - self._pos >= size:  # the usual case: one 512-byte block
            start = self._pos
            self._pos += size
            return self._view[start : self._pos].tobytes()
        parts = []
        while size > 0 and (self._pos < self._end or self._fill()):
            take = min(size, self._end - self._pos)
            parts.append(self._view[self._pos : self._pos + take].tobytes())
            self._pos += take
            size -= take
        return b"".join(parts)

    def copy_to(self, fd: int, size: int, what: str) -> None:
        """Write the next ``size`` bytes to ``fd``; the archive must hold them all."""
        while size > 0:
            if self._pos == self._end and not self._fill():
                raise ItemError(f"archive is truncated inside member {what!r}")
            take = min(size, self._end - self._pos)
            chunk = self._view[self._pos : self._pos + take]
            while chunk:  # a regular file takes it all at once unless the disk refuses
                written = os.write(fd, chunk)
                chunk = chunk[written:]
            self._pos += take
            size -= take

    def skip_to(self, offset: int) -> None:
        """Move forward to ``offset`` (padding, skipped data); it must exist."""
        while self.tell() < offset:
            if self._pos == self._end and not self._fill():
                raise ItemError("archive is truncated: unexpected end of data")
            self._pos += min(offset - self.tell(), self._end - self._pos)

    def drain(self) -> None:
        """Read to the end of the stream (the gzip trailer carries the CRC to check)."""
        self._pos = self._end
        while self._fill():
            self._pos = self._end


class _HeaderReader:
    """The part of a ``TarFile`` that ``TarInfo.fromtarfile`` uses, over a TarSource."""

    def __init__(self, source: TarSource) -> None:
        self.fileobj = source
        self.encoding = tarfile.ENCODING
        self.errors = "surrogateescape"
        self.pax_headers: dict[str, str] = {}
        self.offset = 0  # where the next header starts, as TarInfo advances it

    def next(self) -> tarfile.TarInfo | None:
        """The next member, or None at the end; damage handled as ``TarFile.next`` does."""
        self.fileobj.skip_to(self.offset)
        try:
            return tarfile.TarInfo.fromtarfile(self)  # type: ignore[arg-type]
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]
            return None
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as exc:  # type: ignore[attr-defined]
            if self.offset == 0:
                raise tarfile.ReadError(str(exc)) from None
            return None
        except tarfile.EmptyHeaderError:  # type: ignore[attr-defined]
            if self.offset == 0:
                raise tarfile.ReadError("empty file") from None
            return None
        except tarfile.SubsequentHeaderError as exc:  # type: ignore[attr-defined]
            raise tarfile.ReadError(str(exc)) from None


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

    def create(self, rel: str, mode: int) -> int:
        self.parent_of(rel)
        path = self.path(rel)
        try:
            return os.open(path, _O_WRITE, mode)
        except FileExistsError:
            self.clear(rel)
            return os.open(path, _O_WRITE, mode)


def _write_member(
    source: TarSource, tree: _Tree, rel: str, member: tarfile.TarInfo, mode: int
) -> None:
    """Copy one regular (possibly sparse) member's data into a new file."""
    if source.tell() != member.offset_data:
        raise ItemError(f"archive's headers disagree about where {rel!r} starts")
    fd = tree.create(rel, mode)
    try:
        if member.sparse is None:
            source.copy_to(fd, member.size, rel)
            return
        end = 0
        for offset, length in member.sparse:  # data regions; the rest are holes
            if offset < end or offset + length > member.size:
                raise ItemError(f"archive has a damaged sparse map for {rel!r}")
            os.lseek(fd, offset, os.SEEK_SET)
            source.copy_to(fd, length, rel)
            end = offset + length
        os.ftruncate(fd, member.size)
    finally:
        os.close(fd)


def extract_stream(stream: Readable, dest: Path, limits: Limits) -> ExtractStats:
    """Extract the uncompressed tar ``stream`` into the existing empty folder ``dest``.

    ``stream`` needs only ``readinto`` (a gzip reader, a file, a BytesIO). Returns
    counts; raises ItemError for unsafe, corrupt or oversized archives and
    :class:`job.core.errors.Cancelled` if a stop was requested mid-way. The stream is
    left after the end-of-archive marker; :meth:`TarSource.drain` reads the rest.
    """
    source = stream if isinstance(stream, TarSource) else TarSource(stream)
    headers = _HeaderReader(source)
    stats = ExtractStats()
    seen = Seen()
    tree = _Tree(dest)
    dest_bytes = len(os.fsencode(os.fspath(dest)))  # for the name checks, once per archive
    links: list[Path] = []
    try:
        while (member := headers.next()) is not None:
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
            check_member_path(dest, rel, dest_bytes)
            if member.isreg():
                stats.bytes += member.size
                if stats.bytes > limits.max_bytes:
                    raise ItemError(
                        f"archive would extract more than {_human(limits.max_bytes)} "
                        "(raise --max-bytes if this is expected)"
                    )
                _write_member(source, tree, rel, member, safe_mode(member))
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
