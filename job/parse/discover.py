"""Find every AIDE journal below the failed-runs folder, and split them between shards.

A journal is any regular file ``journal.json`` in a ``logs/<experiment>/`` folder,
at any depth: archive folders nest differently depending on the S3 key and on
how the uploader packed them. Temporary folders and files (a download or a parse
in progress) are never entered, and symbolic links are neither followed nor read.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from job.core.atomic import is_temporary
from job.core.config import Shard
from job.core.config import shard_of as key_shard
from job.core.textsafe import scrub_surrogates
from job.model.layout import JOURNAL_NAME, is_journal_path


@dataclass(frozen=True)
class FoundJournal:
    path: Path  # the real path, for reading (may hold undecodable bytes as surrogates)
    rel: str  # POSIX path relative to the failed-runs folder, safe to print and store
    size: int = 0  # bytes, when found (biggest first shortens a parallel parse)


def find_journals(
    root: Path,
    on_error: Callable[[str, str], None] | None = None,
    *,
    within: Path | None = None,
) -> list[FoundJournal]:
    """All journals below ``root``, sorted by relative path (deterministic order).

    ``within`` (a folder below ``root``) limits the walk to that folder, e.g. one
    archive just extracted; paths stay relative to ``root``. ``on_error(path,
    reason)`` hears about folders that could not be listed and journal names that
    are not regular files; the walk goes on regardless.
    """
    found: list[FoundJournal] = []

    def walk_error(exc: OSError) -> None:
        if on_error is not None:
            on_error(str(exc.filename), exc.strerror or str(exc))

    for dirpath, dirnames, filenames in os.walk(within or root, onerror=walk_error):
        dirnames[:] = sorted(d for d in dirnames if not is_temporary(d))
        if JOURNAL_NAME not in filenames:
            continue
        candidate = Path(dirpath, JOURNAL_NAME)
        rel = candidate.relative_to(root)
        # logs/ must be inside root: a root that is itself a logs/<exp>/ folder does not count
        if not is_journal_path(rel.parts):
            continue
        size = _regular_size(candidate, on_error)
        if size is None:
            continue
        found.append(FoundJournal(candidate, scrub_surrogates(rel.as_posix()), size))
    found.sort(key=lambda f: f.rel)
    return found


def _regular_size(path: Path, on_error: Callable[[str, str], None] | None) -> int | None:
    """The file's size if it is a regular file (not a link), else None."""
    try:
        st = path.lstat()
    except OSError as exc:
        if on_error is not None:
            on_error(str(path), exc.strerror or str(exc))
        return None
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    if on_error is not None:
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        on_error(str(path), f"{kind}; not read")
    return None


def shard_of(rel: str, count: int) -> int:
    """Stable across machines, runs and Python versions (unlike ``hash``)."""
    return int(hashlib.sha1(rel.encode("utf-8")).hexdigest(), 16) % count


def in_shard(rel: str, shard: Shard) -> bool:
    return not shard.active or shard_of(rel, shard.count) == shard.index


class ShardFilter:
    """Which journals belong to this shard: the shard that downloaded their archive.

    Splitting journals by their own path would let shard A parse a journal that
    shard B is still extracting (or has not fetched yet), so journals follow the
    archive they came from, as recorded in the download manifests. Journals under
    no known archive folder are another shard's work in progress when manifests
    exist; only a tree with no manifest at all (made by hand) falls back to a hash
    of the journal's path.
    """

    def __init__(self, failed_runs_dir: Path, shard: Shard) -> None:
        self.shard = shard
        self._key_of_folder: dict[str, str] = {}
        if shard.active:
            from job.model.manifest import load

            self._key_of_folder = {rec.folder: rec.key for rec in load(failed_runs_dir).values()}

    def __call__(self, rel: str) -> bool:
        if not self.shard.active:
            return True
        parts = rel.split("/")
        for depth in range(len(parts) - 1, 0, -1):
            key = self._key_of_folder.get("/".join(parts[:depth]))
            if key is not None:
                return key_shard(key, self.shard.count) == self.shard.index
        return not self._key_of_folder and in_shard(rel, self.shard)
