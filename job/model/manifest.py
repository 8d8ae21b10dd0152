"""What the download stage has already done, so a nightly re-run fetches only what is new.

The manifest is a JSON file in the output folder, one record per S3 key: the
ETag and size that were extracted, the outcome and when. It is rewritten
atomically (never appended in place), at most about once a second during a run
and once at the end, so a killed run loses at most the last second of records;
those archives are simply fetched again, which yields the same folders.

Sharded workers write ``manifest.shard-I-of-N.json`` so they never race on one
file; loading reads every manifest file in the folder and keeps the newest record
per key, so changing the shard count between runs does not refetch anything.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from job.core.atomic import atomic_write_bytes

MANIFEST_NAME = "manifest"
SCHEMA_VERSION = 1


@dataclass
class Record:
    key: str
    etag: str
    size: int
    outcome: str  # "succeeded" | "failed"
    time: str
    folder: str
    error: str | None = None
    bytes_extracted: int | None = None
    members: int | None = None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def manifest_path(output_dir: Path, suffix: str = "") -> Path:
    return output_dir / f"{MANIFEST_NAME}{suffix}.json"


def manifest_files(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    files = [manifest_path(output_dir)]
    files += sorted(output_dir.glob(f"{MANIFEST_NAME}.shard-*-of-*.json"))
    return [f for f in files if f.is_file()]


def _read(path: Path) -> dict[str, Record]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        # A damaged manifest only costs a refetch; never a reason to stop the run.
        return {}
    records: dict[str, Record] = {}
    fields = set(Record.__dataclass_fields__)
    for raw in (data.get("archives") or {}).values() if isinstance(data, dict) else []:
        if (
            isinstance(raw, dict)
            and {"key", "etag", "size", "outcome", "time", "folder"} <= raw.keys()
        ):
            rec = Record(**{k: v for k, v in raw.items() if k in fields})
            records[rec.key] = rec
    return records


def load(output_dir: Path) -> dict[str, Record]:
    merged: dict[str, Record] = {}
    for path in manifest_files(output_dir):
        for key, rec in _read(path).items():
            if key not in merged or rec.time >= merged[key].time:
                merged[key] = rec
    return merged


class Manifest:
    """In-memory records plus debounced atomic saves; safe to call from worker threads."""

    def __init__(
        self,
        output_dir: Path,
        *,
        suffix: str = "",
        bucket_path: str = "",
        keep: dict[str, Record] | None = None,
        min_interval: float = 1.0,
    ) -> None:
        self.path = manifest_path(output_dir, suffix)
        self.bucket_path = bucket_path
        self.records: dict[str, Record] = dict(keep or {})
        self._lock = threading.Lock()
        self._dirty = False
        self._save_lock = threading.Lock()
        self._last_save = 0.0
        self._min_interval = min_interval
        self._interval = min_interval

    def put(self, record: Record) -> None:
        with self._lock:
            self.records[record.key] = record
            self._dirty = True
            due = time.monotonic() - self._last_save >= self._interval
        if due:
            self.save()

    def save(self, *, force: bool = False) -> None:
        """Write a snapshot; serialisation happens outside the records lock.

        The interval between debounced saves grows with the cost of a save (at
        least ten times it), so with tens of thousands of records the manifest
        never takes more than a small share of the run.
        """
        with self._save_lock:
            with self._lock:
                if not (self._dirty or force):
                    return
                snapshot = [self.records[k] for k in sorted(self.records)]
                self._dirty = False
            started = time.monotonic()
            doc = {
                "schema": SCHEMA_VERSION,
                "bucket_path": self.bucket_path,
                "archives": {rec.key: rec for rec in snapshot},
            }
            atomic_write_bytes(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
            finished = time.monotonic()
            self._last_save = finished
            self._interval = max(self._min_interval, 10 * (finished - started))
