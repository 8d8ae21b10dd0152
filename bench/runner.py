"""Run contenders in alternation against one served dataset and collect measurements.

Alternation (A B C D A B C D ...) rather than A A A B B B: slow drifts of the
machine (page cache, thermal, a neighbour's load) then hit every contender alike.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.contenders import CONTENDERS, Contender
from bench.dataset import Dataset, tree_bytes
from bench.measure import Measurement, run_measured, tail

MB = 2**20


@dataclass
class Series:
    """All repeats of one contender on one dataset, and their summary."""

    name: str
    what: str
    runs: list[Measurement] = field(default_factory=list)

    @property
    def good(self) -> list[Measurement]:
        return [m for m in self.runs if m.ok]

    @property
    def ok(self) -> bool:
        return bool(self.runs) and len(self.good) == len(self.runs)

    @property
    def median(self) -> float | None:
        return statistics.median(m.seconds for m in self.good) if self.good else None

    @property
    def best(self) -> float | None:
        return min(m.seconds for m in self.good) if self.good else None

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(m.cpu_seconds for m in self.good) if self.good else None

    @property
    def rss_max_mb(self) -> float | None:
        return max(m.rss_max_mb for m in self.good) if self.good else None

    @property
    def rss_sum_mb(self) -> float | None:
        return max(m.rss_sum_mb for m in self.good) if self.good else None

    @property
    def pss_sum_mb(self) -> float | None:
        return max(m.pss_sum_mb for m in self.good) if self.good else None

    @property
    def errors(self) -> list[str]:
        return [m.error for m in self.runs if not m.ok]

    def to_json(self, volume_bytes: int | None = None) -> dict[str, Any]:
        median = self.median
        return {
            "what": self.what,
            "ok": self.ok,
            "median_s": median,
            "min_s": self.best,
            "mb_per_s": (volume_bytes / MB / median) if volume_bytes and median else None,
            "cpu_median_s": self.cpu_median,
            "rss_max_single_mb": self.rss_max_mb,
            "rss_sum_mb": self.rss_sum_mb,
            "pss_sum_mb": self.pss_sum_mb,
            "errors": self.errors,
            "runs": [m.to_json() for m in self.runs],
        }


def run_one(
    contender: Contender,
    data: Dataset,
    url: str,
    work: Path,
    label: str,
    env: dict[str, str],
    *,
    source: Path | None = None,
    keep: bool = False,
    timeout: float | None = None,
) -> tuple[Measurement, Path]:
    """One execution from an empty output folder, checked for completeness.

    Before the clock starts, dirty pages of earlier runs are flushed (``sync``),
    so no contender pays for writing back another one's output. Afterwards the
    output is set aside in ``work/trash`` rather than deleted (see
    :func:`set_aside`).
    """
    out = work / label
    set_aside(out, work)
    out.mkdir(parents=True)
    log = work / f"{label}.log"
    log.unlink(missing_ok=True)
    os.sync()
    m = run_measured(contender.argv(data, url, out, source), env=env, log=log, timeout=timeout)
    if contender.name == "floor" and m.ok:
        inner = _last_json(log)
        if inner and "seconds" in inner:
            m.extra["wall_s"] = m.seconds
            m.seconds = float(inner["seconds"])  # decompress + extract only; reading is not timed
    files, found = tree_bytes(out)
    m.extra.update(output_files=files, output_bytes=found)
    expected = contender.expect_bytes(data)
    if m.ok and found < expected * 0.999:
        m.ok = False
        m.error = f"incomplete output: {found} of {expected} bytes"
    if not m.ok:
        m.error = f"{m.error}\n{tail(log)}".strip()
    if not keep:
        set_aside(out, work)
    return m, out


def set_aside(path: Path, work: Path) -> None:
    """Move a finished output out of the way and out of memory; :func:`empty_trash` deletes it later.

    Deleting right away would slow down the next contender, whatever it is: ext4
    will not reuse an inode freed in the last minute or more (``recently_deleted``
    in its allocator) and walks past every one of them for each file it creates.
    In ``perf`` that was 10-30% of a run's CPU time, all of it an artefact of the
    bench deleting ~800 files just before the next run. Space permitting, trash is
    kept until the section ends.

    Kept trash must not stay in the page cache, though (:func:`evict`).
    """
    if not path.exists():
        return
    trash = work / "trash"
    trash.mkdir(exist_ok=True)
    moved = trash / f"{path.name}-{time.monotonic_ns()}"
    os.rename(path, moved)
    if shutil.disk_usage(work).free < _MIN_FREE:
        empty_trash(work)
    else:
        evict(moved)


def evict(tree: Path) -> None:
    """Write back ``tree`` and drop its pages from the page cache, keeping the files.

    On this kind of VM the host takes back memory the guest is not using, and the
    first touch of such a page costs the guest ~10 us (writes into new page cache
    ran at ~400 MB/s instead of ~4 GB/s). Trash kept in the page cache used up the
    memory the host still backed after ~1.5 GB, i.e. by the third or fourth round,
    and from then on every contender paid that per page it wrote: the "slow
    stretches" of earlier bench runs. Dropping the clean pages (``sync``, then
    ``POSIX_FADV_DONTNEED`` per file) frees them without freeing any inode, so the
    next run writes into memory that is still backed. Best effort: what cannot
    be opened, or is not a regular file, is left alone.
    """
    os.sync()
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # a fifo must not block the bench
    for root, _dirs, files in os.walk(tree):
        for name in files:
            try:
                fd = os.open(os.path.join(root, name), flags)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass  # not a regular file (ESPIPE): nothing cached to drop
            finally:
                os.close(fd)


_MIN_FREE = 8 << 30  # below this much free space, trash is deleted at once


def empty_trash(work: Path) -> None:
    shutil.rmtree(work / "trash", ignore_errors=True)


def _last_json(log: Path) -> dict[str, Any] | None:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def alternate(
    names: Sequence[str],
    data: Dataset,
    url: str,
    work: Path,
    env: dict[str, str],
    *,
    repeats: int,
    source: Path | None = None,
    keep_last: Sequence[str] = (),
    timeout: float | None = None,
    say: Callable[[str], None] = print,
) -> tuple[dict[str, Series], dict[str, Path]]:
    """``repeats`` rounds of every contender in turn; keeps the last good output of ``keep_last``."""
    series = {n: Series(n, CONTENDERS[n].what) for n in names}
    kept: dict[str, Path] = {}
    for r in range(repeats):
        for name in names:
            keep = name in keep_last and r == repeats - 1
            m, out = run_one(
                CONTENDERS[name],
                data,
                url,
                work,
                f"{name}-{r}",
                env,
                source=source,
                keep=keep,
                timeout=timeout,
            )
            series[name].runs.append(m)
            status = "ok" if m.ok else f"FAILED ({m.error.splitlines()[0] if m.error else '?'})"
            say(
                f"  round {r + 1}/{repeats} {name:<9} {m.seconds:8.2f}s  max RSS {m.rss_max_mb:7.1f} MB  {status}"
            )
            if keep and m.ok:
                kept[name] = out
            elif keep:
                set_aside(out, work)
    empty_trash(work)
    return series, kept
