"""The project's own generator of realistic failed biomlbench run groups.

Used by the demo, the tests and the bench. Everything is a function of a seed:
the same call writes byte-identical archives on any machine.

API
---
``generate_run_group(rng_or_seed, *, agent="aide", n_runs=3, steps=12, when=None,
size_bytes=None, verbose_log_bytes=None, submission_rows=None, blob_bytes=0,
compresslevel=9) -> RunGroupSpec``
    Draw a run group (cheap: nothing is rendered yet). ``agent`` is one of
    ``AGENTS`` (``aide``, ``biomni``, ``stella``, ``mlagentbench``); AIDE runs get a
    journal of exactly ``steps`` nodes. ``size_bytes`` asks for about that many
    extracted bytes per archive (the remainder after journals goes to
    ``aide.verbose.log``/agent logs and submission CSVs); ``blob_bytes`` adds an
    incompressible checkpoint (archives that are big on the wire).

``RunGroupSpec``
    ``.name``, ``.agent``, ``.when``, ``.runs`` (``RunSpec``: ``run_id``, ``task``,
    ``seed``, ``exp_name``, ``journal_path``...), ``.key(prefix, layout)``,
    ``.metadata()`` (metadata.json) and ``.expected()``: the ground truth of every
    journal (steps, buggy steps, exception types, best metric, node ids, plans) in
    the shape of ``/work/shared/samples/expected.json``.

``write_archive(spec, dest) -> Path``
    Write ``<run_group>.tar.gz`` exactly as biomlbench does (``tarfile`` ``w:gz``,
    level 9, run-group folder as the top member, ``tar.add`` order, PAX float
    mtimes), streaming: no file is ever held whole in memory. ``dest`` is the
    archive path or the folder to put it in.

``seed_bucket(root, *, bucket="biomlbench", prefix="v1/artifacts/failed_runs/",
n_archives=8, layout="flat", agents=("aide",), seed=0, workers=1, size_mb=None,
**sizes) -> list[Path]``
    Fill ``root/bucket/prefix`` (a folder ``LocalS3(root)`` serves) with archives.
    ``layout``: ``"flat"`` (``<prefix><group>.tar.gz``), ``"cloud"``
    (``<prefix><agent>/<domain>/<task>/<group>.tar.gz``) or ``"mixed"``. Agents are
    assigned round-robin. ``**sizes`` go to ``generate_run_group``.

``big_archive_spec(compressed_bytes, seed=0) -> RunGroupSpec``
    A run group whose archive is about ``compressed_bytes`` on the wire (mostly a
    checkpoint blob plus a huge verbose log and submission), for the 1 GB case.

What the journals look like (checked against AIDE 0.2's own output in the
samples): compact JSON ``{"nodes": [...], "node2parent": {...}, "__version": "2"}``;
each node has ``code, plan, step, id, ctime, parent (null), children ([]),
_term_out (list of write() fragments), exec_time, exc_type, exc_info, exc_stack,
analysis, metric {value, maximize}, is_buggy`` in that order; good nodes have
``exc_*: null``; buggy nodes have ``metric {"value": null, "maximize": null}``.
The tree follows AIDE's draft / debug / improve policy; failures come from a
catalogue (missing modules, KeyError on a wrong column, shape mismatches,
FileNotFoundError, CUDA OOM, timeouts, removed APIs, NameError, numpy
_ArrayMemoryError...) with Python 3.11 tracebacks whose ``runfile.py`` line numbers
point at the real failing line. About one AIDE run in five never finds a good node.
"""

from __future__ import annotations

import random
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from job.demo.synthetic.archive import (
    EPOCH,
    RunGroupSpec,
    RunSpec,
    generate_run_group,
    write_archive,
)
from job.demo.synthetic.catalog import AGENTS, TASKS, Task

__all__ = [
    "AGENTS",
    "TASKS",
    "RunGroupSpec",
    "RunSpec",
    "Task",
    "big_archive_spec",
    "generate_run_group",
    "plan_bucket",
    "seed_bucket",
    "write_archive",
]

LAYOUTS = ("flat", "cloud", "mixed")


def plan_bucket(
    *,
    prefix: str = "v1/artifacts/failed_runs/",
    n_archives: int = 8,
    layout: str = "flat",
    agents: tuple[str, ...] = ("aide",),
    seed: int = 0,
    start: datetime | None = None,
    size_mb: float | None = None,
    **sizes: Any,
) -> list[tuple[str, RunGroupSpec]]:
    """The (key, spec) pairs ``seed_bucket`` writes, without writing anything."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if size_mb is not None:
        sizes["size_bytes"] = int(size_mb * 1024 * 1024)
    rng = random.Random(seed)
    when = start or EPOCH
    planned = []
    for i in range(n_archives):
        when = when + timedelta(seconds=rng.randrange(600, 6 * 3600))
        agent = agents[i % len(agents)]
        spec = generate_run_group(random.Random(f"{seed}:{i}"), agent=agent, when=when, **sizes)
        this_layout = layout if layout != "mixed" else rng.choice(("flat", "cloud"))
        planned.append((spec.key(prefix, this_layout), spec))
    return planned


def _write(spec: RunGroupSpec, path: Path) -> Path:
    return write_archive(spec, path)


def seed_bucket(
    root: Path,
    *,
    bucket: str = "biomlbench",
    prefix: str = "v1/artifacts/failed_runs/",
    n_archives: int = 8,
    layout: str = "flat",
    agents: tuple[str, ...] = ("aide",),
    seed: int = 0,
    workers: int = 1,
    start: datetime | None = None,
    size_mb: float | None = None,
    **sizes: Any,
) -> list[Path]:
    """Write ``n_archives`` run groups under ``root/bucket/prefix``; return their paths.

    ``workers > 1`` writes archives in that many processes; the bytes do not
    depend on it (every archive has its own seed).
    """
    planned = plan_bucket(
        prefix=prefix,
        n_archives=n_archives,
        layout=layout,
        agents=agents,
        seed=seed,
        start=start,
        size_mb=size_mb,
        **sizes,
    )
    targets = [(spec, Path(root) / bucket / key) for key, spec in planned]
    if workers <= 1 or len(targets) <= 1:
        return [write_archive(spec, path) for spec, path in targets]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_write, *zip(*targets, strict=True)))


def big_archive_spec(compressed_bytes: int, seed: int = 0, *, steps: int = 120) -> RunGroupSpec:
    """An AIDE run group of about ``compressed_bytes`` on the wire.

    70% is an incompressible ``code/model_fold0.pt``; the rest is ordinary text
    (verbose log, submission) that compresses about 5x, so the archive extracts
    to roughly 2.2x its compressed size.
    """
    blob = int(compressed_bytes * 0.7)
    text = int((compressed_bytes - blob) * 5.0)
    return generate_run_group(
        random.Random(f"big:{seed}"),
        agent="aide",
        n_runs=2,
        steps=steps,
        size_bytes=text + blob,
        blob_bytes=blob,
        compresslevel=6,
    )
