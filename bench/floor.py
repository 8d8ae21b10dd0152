"""The floor: decompress (isal) and extract every archive from memory, one process per CPU.

No network, no listing, no retries, no safety checks: whatever the job spends
beyond this is overhead. The archives are read into memory first (not timed),
then each is decompressed with ``isal.igzip.decompress`` and its members written
with ``tarfile`` in a pool of worker processes (default: the usable CPUs), forked
after the reads so no archive is copied to them. Processes, not threads: tarfile's
header parsing and file writes hold the GIL, so threads of one interpreter stop
scaling after two. Prints one JSON line: ``{"seconds": ..., "archives": ..., "bytes": ...}``.

Usage: ``python -m bench.floor ARCHIVE_DIR OUTPUT_DIR [PROCESSES]``
"""

from __future__ import annotations

import io
import json
import multiprocessing
import sys
import tarfile
import time
from pathlib import Path

from isal import igzip

from job.core.config import usable_cpus

#: Set before the pool forks; workers read it by index.
_BLOBS: list[bytes] = []
_DEST = Path()


def _extract(index: int) -> int:
    raw = igzip.decompress(_BLOBS[index])
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        tar.extractall(_DEST, filter="data")
    return len(raw)


def main(argv: list[str]) -> int:
    global _DEST
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    src, _DEST = Path(argv[0]), Path(argv[1])
    processes = int(argv[2]) if len(argv) == 3 else usable_cpus()
    _BLOBS[:] = [p.read_bytes() for p in sorted(src.rglob("*.tar.gz"))]
    _DEST.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if processes <= 1:
        sizes = [_extract(i) for i in range(len(_BLOBS))]
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            sizes = pool.map(_extract, range(len(_BLOBS)), chunksize=1)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "archives": len(_BLOBS), "bytes": sum(sizes)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
