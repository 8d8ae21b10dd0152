"""The bench keeps finished outputs out of the next contender's way, without deleting them.

A deletion slows the next contender's file creations (ext4 ``recently_deleted``);
kept outputs left in the page cache pushed earlier bench runs onto memory the VM's
host had taken back. So a finished output is moved to the trash, keeps every byte,
and leaves the page cache.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from pathlib import Path

from bench.runner import evict, set_aside

_PAGE = mmap.PAGESIZE


def resident_pages(path: Path) -> int:
    """How many of ``path``'s pages are in the page cache (``mincore`` over a mapping of it)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    size = path.stat().st_size
    pages = (size + _PAGE - 1) // _PAGE
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        buf = (ctypes.c_char * size).from_buffer(mm)
        try:
            vec = ctypes.create_string_buffer(pages)
            if libc.mincore(ctypes.addressof(buf), size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
            return sum(byte & 1 for byte in vec.raw)
        finally:
            del buf  # the mapping cannot close while a ctypes view of it lives


def make_output(root: Path) -> dict[str, bytes]:
    files = {
        "group/run/report.txt": b"report\n" * 50_000,
        "group/run/logs/journal.json": os.urandom(300_000),
        "top.bin": os.urandom(5 * _PAGE),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "group" / "link").symlink_to("run/report.txt")
    os.mkfifo(root / "group" / "pipe")
    return files


def test_evict_drops_every_file_from_the_page_cache_and_keeps_its_bytes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    files = make_output(out)
    assert all(resident_pages(out / rel) > 0 for rel in files)  # just written: cached

    evict(out)  # the fifo neither blocks this nor stops it; the link is not followed

    assert {rel: resident_pages(out / rel) for rel in files} == dict.fromkeys(files, 0)
    assert {rel: (out / rel).read_bytes() for rel in files} == files


def test_set_aside_moves_the_output_to_the_trash_whole_and_out_of_memory(tmp_path: Path) -> None:
    work = tmp_path / "work"
    out = work / "download-0"
    files = make_output(out)

    set_aside(out, work)

    assert not out.exists()
    (moved,) = (work / "trash").iterdir()
    assert moved.name.startswith("download-0-")
    assert {rel: resident_pages(moved / rel) for rel in files} == dict.fromkeys(files, 0)
    assert {rel: (moved / rel).read_bytes() for rel in files} == files
    assert os.readlink(moved / "group" / "link") == "run/report.txt"
