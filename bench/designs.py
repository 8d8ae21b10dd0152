"""The download designs issue #18 asked to compare, as bare prototypes on the job's own parts.

``analyze-failures download`` forks one worker process per usable CPU + 1, each
with its own client, and streams every archive from its GET straight into
decompression and extraction (:mod:`job.download.workers`). The alternatives:

* ``extract_pool``: threads of one process do the GETs (the whole body into
  memory), a pool of worker processes (one per usable CPU) decompresses and
  extracts: network work and CPU work kept apart, at the price of copying every
  compressed byte through a pipe and holding whole bodies in memory;
* ``per_archive``: one short-lived forked process per archive (usable CPUs + 1
  at a time), each making its own client from the parent's session, then
  streaming as the job does.

Both use the job's own pieces (listing, ClientMaker, Receiver / extract_stream
with the same limits) and skip everything a real night needs on top (manifest,
log events, retries, throttle, publishing checks), so they are lower bounds of
what those designs would cost. Usage:
``python -m bench.designs DESIGN ENDPOINT_URL BUCKET_PATH OUTPUT_DIR [CPUS]``.
"""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.connection
import os
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from job.core.config import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_MEMBERS,
    RetrySettings,
    S3Settings,
    Shard,
    usable_cpus,
)
from job.download.extract import Limits, extract_stream
from job.download.listing import Archive, list_archives, parse_bucket_path
from job.download.receive import Receiver, open_decompressed
from job.download.s3client import ClientMaker

LIMITS = Limits(max_bytes=DEFAULT_MAX_BYTES, max_members=DEFAULT_MAX_MEMBERS)


def _extract(body: bytes, dest: str) -> int:
    tmp = Path(dest + ".part")
    tmp.mkdir(parents=True)
    stats = extract_stream(open_decompressed(io.BytesIO(body)), tmp, LIMITS)
    os.rename(tmp, dest)
    return stats.bytes


def extract_pool(
    maker: ClientMaker, bucket: str, archives: list[Archive], out: Path, cpus: int
) -> None:
    with ProcessPoolExecutor(cpus, mp_context=multiprocessing.get_context("fork")) as procs:
        list(procs.map(abs, range(cpus)))  # forked now, before any thread starts
        client = maker.client(pool_size=2 * cpus)

        def one(archive: Archive) -> int:
            body = client.get_object(Bucket=bucket, Key=archive.key)["Body"].read()
            return procs.submit(_extract, body, str(out / archive.folder)).result()

        with ThreadPoolExecutor(max(8, 2 * cpus)) as threads:
            list(threads.map(one, archives))


def _receive_one(maker: ClientMaker, bucket: str, key: str, dest: str) -> None:
    receiver = Receiver(maker.client(pool_size=1), bucket, LIMITS, slots=1)
    tmp = Path(dest + ".part")
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    receiver.receive(key, tmp, None)
    os.rename(tmp, dest)


def per_archive(
    maker: ClientMaker, bucket: str, archives: list[Archive], out: Path, cpus: int
) -> None:
    context = multiprocessing.get_context("fork")
    running: list[Any] = []
    for archive in archives:
        while len(running) >= cpus + 1:
            multiprocessing.connection.wait([p.sentinel for p in running])
            running = [p for p in running if p.is_alive()]
        process = context.Process(
            target=_receive_one, args=(maker, bucket, archive.key, str(out / archive.folder))
        )
        process.start()
        running.append(process)
    for process in running:
        process.join()


DESIGNS = {"extract_pool": extract_pool, "per_archive": per_archive}


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5) or argv[0] not in DESIGNS:
        print(__doc__, file=sys.stderr)
        return 2
    design, url, bucket_path, out = argv[0], argv[1], argv[2], Path(argv[3])
    cpus = int(argv[4]) if len(argv) == 5 else usable_cpus()
    where = parse_bucket_path(bucket_path)
    maker = ClientMaker(S3Settings(endpoint_url=url))
    archives, _ = list_archives(
        maker.client(pool_size=1), where, retry=RetrySettings(), shard=Shard()
    )
    out.mkdir(parents=True, exist_ok=True)
    DESIGNS[design](maker, where.bucket, archives, out, cpus)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
