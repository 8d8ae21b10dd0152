"""Write files so that readers on a shared drive never see a half-written one.

Every file the job publishes goes through here: content is written to a hidden
temporary sibling, flushed to disk, then renamed over the target. A crash at any
point leaves either the old file or the new one, plus at worst a temporary file
that :func:`remove_stale_temporaries` deletes on the next run.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

#: Marker in the names of every temporary file or folder the job creates. Parsers
#: and listings skip names containing it; cleanup removes them.
TEMP_MARKER = ".partial-"


#: Longest file name most filesystems take (bytes, ext4's NAME_MAX).
NAME_MAX = 255
#: What a temporary name adds after its prefix: ``<pid>-<8 hex>``, pid up to 10 digits.
_UNIQUE = 10 + 1 + 8
#: Bytes of the target's name kept readable in a shortened temporary name.
_KEPT = 100


def temp_prefix(target: Path) -> str:
    """How every temporary of ``target`` starts: ``.<name>.partial-``, shortened if needed.

    A target whose name is already close to NAME_MAX (a long key or member name)
    would get a temporary name past it, and ENAMETOOLONG used to end the whole
    run. Such names keep their first bytes and add a hash of the whole name, so
    temporaries stay unique per target and shard-aware cleanup (which matches
    this prefix) still finds them.
    """
    name = target.name
    raw = os.fsencode(name)
    if 1 + len(raw) + len(TEMP_MARKER) + _UNIQUE > NAME_MAX:
        digest = hashlib.sha256(raw).hexdigest()[:16]
        name = os.fsdecode(raw[:_KEPT]).rstrip("\udcff") + "~" + digest
        name = os.fsdecode(os.fsencode(name))  # a clipped multi-byte character stays escaped
    return f".{name}{TEMP_MARKER}"


def temp_sibling(target: Path) -> Path:
    """A unique hidden name in ``target``'s folder, so a rename is atomic (same filesystem)."""
    return target.with_name(f"{temp_prefix(target)}{os.getpid()}-{secrets.token_hex(4)}")


def is_temporary(name: str) -> bool:
    return name.startswith(".") and TEMP_MARKER in name


def atomic_write_bytes(target: Path, data: bytes, *, durable: bool = True) -> None:
    """``durable=False`` skips the fsync: for files regenerated from others (pages)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(target)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(target: Path, text: str, *, durable: bool = True) -> None:
    # errors="replace": lone surrogates from terminal output must never be fatal.
    atomic_write_bytes(target, text.encode("utf-8", errors="replace"), durable=durable)


def atomic_write_json(target: Path, obj: Any) -> None:
    atomic_write_bytes(
        target,
        orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n",
    )


def iter_temporaries(root: Path) -> Iterator[Path]:
    """Every leftover temporary below ``root`` (not descending into them)."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames):
            if is_temporary(name):
                dirnames.remove(name)
                yield Path(dirpath, name)
        for name in filenames:
            if is_temporary(name):
                yield Path(dirpath, name)


def remove_tree(path: Path) -> None:
    """Remove a file, link or folder, whatever it is; missing is fine."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_temporaries(root: Path) -> int:
    """Delete what an interrupted earlier run left; returns how many were removed."""
    found = list(iter_temporaries(root))
    for path in found:
        remove_tree(path)
    return len(found)
