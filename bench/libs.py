"""Why isal and orjson are dependencies: each against its stdlib twin on the bench's data.

``.venv/bin/python -m bench.libs`` (after one ``python -m bench`` run has generated
the default dataset into ``bench/results/cache/``). Best of three, one core.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import orjson
from isal import igzip

CACHE = Path(__file__).resolve().parent / "results" / "cache"


def best_of(fn: Callable[[], int], rounds: int = 3) -> tuple[int, float]:
    best, size = float("inf"), 0
    for _ in range(rounds):
        started = time.perf_counter()
        size = fn()
        best = min(best, time.perf_counter() - started)
    return size, best


def main() -> int:
    archives = sorted(CACHE.glob("*/root/**/*.tar.gz"))
    if not archives:
        print("no bench dataset yet: run `python -m bench` once", file=sys.stderr)
        return 2
    blobs = [p.read_bytes() for p in archives[:40]]
    out, t_zlib = best_of(lambda: sum(len(zlib.decompress(b, 31)) for b in blobs))
    _, t_isal = best_of(lambda: sum(len(igzip.decompress(b)) for b in blobs))
    print(
        f"gunzip  zlib {out / 1e6 / t_zlib:7.0f} MB/s   isal {out / 1e6 / t_isal:7.0f} MB/s"
        f"   isal is {t_zlib / t_isal:.2f}x faster"
    )
    docs = []
    for blob in blobs[:10]:
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            for member in tar:
                if member.name.endswith("journal.json"):
                    docs.append(tar.extractfile(member).read())  # type: ignore[union-attr]
    size = sum(map(len, docs))
    _, t_json = best_of(lambda: len([json.loads(d) for d in docs]))
    _, t_orjson = best_of(lambda: len([orjson.loads(d) for d in docs]))
    print(
        f"journal json {size / 1e6 / t_json:7.0f} MB/s   orjson {size / 1e6 / t_orjson:7.0f} MB/s"
        f"   orjson is {t_json / t_orjson:.2f}x faster"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
