"""Names the filesystem will take: checked before anything is created for them.

A key or an archive member whose name is longer than the filesystem allows used
to surface as ENAMETOOLONG in the middle of a run, with a traceback, no summary
and no index page, every night while the object existed. Checking the lengths
first turns that into one archive's failure with a reason a person can act on.
"""

from __future__ import annotations

import os
from pathlib import Path

from job.core.atomic import NAME_MAX
from job.core.errors import ItemError

#: Longest path the kernel resolves (Linux PATH_MAX, bytes, including the final NUL).
PATH_MAX = 4096
#: What the job may append to an archive's folder name (``--keep-compressed``).
COMPRESSED_SUFFIX = ".tar.gz"


def check_archive_folder(output_dir: Path, folder: str, keep_compressed: bool) -> None:
    """Raise ItemError when ``folder`` (from the key) cannot exist under ``output_dir``."""
    parts = folder.split("/")
    for i, part in enumerate(parts):
        extra = len(COMPRESSED_SUFFIX) if keep_compressed and i == len(parts) - 1 else 0
        size = len(os.fsencode(part)) + extra
        if size > NAME_MAX:
            raise ItemError(
                f"key names a folder of {size} bytes ({_clip(part)}); "
                f"the filesystem takes at most {NAME_MAX}"
            )
    _check_path(output_dir / f"{folder}{COMPRESSED_SUFFIX}", "key")


def check_member_path(dest: Path, rel: str, dest_bytes: int | None = None) -> None:
    """Raise ItemError when member ``rel`` of an archive extracted into ``dest`` cannot exist.

    Runs once per member (archives hold up to hundreds of thousands), so the common
    case is decided from byte counts alone: ``dest_bytes`` is ``dest``'s encoded
    length, worked out once per archive by the caller.
    """
    raw = len(os.fsencode(rel))
    if dest_bytes is None:
        dest_bytes = len(os.fsencode(os.fspath(dest)))
    if raw <= NAME_MAX and dest_bytes + 1 + raw < PATH_MAX:
        return  # no component can be longer than the whole name, nor the path too long
    for part in rel.split("/"):
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise ItemError(
                f"archive member {_clip(rel)} has a name of {size} bytes; "
                f"the filesystem takes at most {NAME_MAX}"
            )
    _check_path(dest / rel, "archive member")


def _check_path(path: Path, what: str) -> None:
    size = len(os.fsencode(os.fspath(path)))
    if size >= PATH_MAX:
        raise ItemError(
            f"{what} gives a path of {size} bytes ({_clip(str(path))}); "
            f"the system takes at most {PATH_MAX - 1}"
        )


def _clip(text: str, keep: int = 60) -> str:
    return repr(text if len(text) <= keep else text[: keep // 2] + "…" + text[-keep // 2 :])
