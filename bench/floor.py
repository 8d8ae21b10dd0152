"""The floor: decompress (isal) and extract every archive from memory, two at a time.

No network, no listing, no retries, no safety checks: whatever the job spends
beyond this is overhead. The archives are read into memory first (not timed),
then each is decompressed with ``isal.igzip.decompress`` (GIL released) and its
members written with ``tarfile`` on a pool of two threads (the machine has two
cores). Prints one JSON line: ``{"seconds": ..., "archives": ..., "bytes": ...}``.

Usage: ``python -m bench.floor ARCHIVE_DIR OUTPUT_DIR [THREADS]``
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from isal import igzip


def _extract(data: bytes, dest: Path) -> int:
    raw = igzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        tar.extractall(dest, filter="data")
    return len(raw)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    src, dest = Path(argv[0]), Path(argv[1])
    threads = int(argv[2]) if len(argv) == 3 else 2
    blobs = [p.read_bytes() for p in sorted(src.rglob("*.tar.gz"))]
    dest.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        sizes = list(pool.map(lambda b: _extract(b, dest), blobs))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "archives": len(blobs), "bytes": sum(sizes)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
