"""Folders below the output root that are real folders, never links followed out.

The output drive is shared: anyone (or any earlier bug) may leave a symlink
where the job expects one of its own folders, e.g. ``failed_runs/aide ->
/elsewhere``. ``Path.mkdir(parents=True)`` and every path-based write after it
follow such a link, so the job would extract into, and delete inside, a folder
outside the output root. Here each component is opened relative to its parent's
descriptor with ``O_NOFOLLOW | O_DIRECTORY``, starting from the root, so a link
is seen for what it is; it is reported once (``on_link``) and replaced by a real
folder. The root itself is trusted: it is what the operator chose to mount.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
from collections.abc import Callable
from pathlib import Path

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: A folder being filled: nobody else may enter it, so nobody can plant a link or
#: swap a folder inside it between the job's checks and its writes.
PRIVATE_DIR_MODE = 0o700


@functools.cache
def _umask() -> int:
    """The process's umask, without changing it (Linux shows it in /proc/self/status).

    ``os.umask`` can only be read by setting it, which would give any file
    another thread creates meanwhile the wrong mode; that is the fallback only.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_dir(path: Path) -> None:
    """Give the private folder ``path`` the mode ``mkdir`` would have given it under the umask.

    Through a descriptor opened without following links: were ``path`` swapped
    for a link meanwhile, this fails instead of changing the link's target.
    """
    fd = os.open(path, _O_DIR)
    try:
        os.fchmod(fd, 0o777 & ~_umask())
    finally:
        os.close(fd)


def _open_child(fd: int, name: str, where: Path, on_link: Callable[[Path], None]) -> int:
    """Descriptor of the real folder ``name`` in ``fd``, creating it or replacing a link."""
    for _ in range(3):  # a racing creator can only make us go round again
        try:
            return os.open(name, _O_DIR, dir_fd=fd)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=fd)
            continue
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            if not stat.S_ISLNK(mode):
                raise  # a file where a folder goes: the caller's archive fails
            on_link(where / name)
            os.unlink(name, dir_fd=fd)
    return os.open(name, _O_DIR, dir_fd=fd)


def ensure_real_dirs(root: Path, rel: str, on_link: Callable[[Path], None]) -> None:
    """Make ``root/rel`` exist as a chain of real folders (no links) below ``root``."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    where = root
    try:
        for name in (p for p in rel.split("/") if p):
            child = _open_child(fd, name, where, on_link)
            os.close(fd)
            fd, where = child, where / name
    finally:
        os.close(fd)


def is_real_dir(root: Path, rel: str) -> bool:
    """Is ``root/rel`` a folder reached without following any link below ``root``?"""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        for name in (p for p in rel.split("/") if p):
            child = os.open(name, _O_DIR, dir_fd=fd)
            os.close(fd)
            fd = child
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
