"""Run-group specs, and writing them as biomlbench writes them: ``<run_group>.tar.gz``.

biomlbench calls ``tarfile.open(path, "w:gz")`` then ``tar.add(run_group_dir,
arcname=run_group)``. So: gzip at level 9 with the archive's name in the gzip
header; a PAX tar whose first member is the run-group folder; members in the
order ``tar.add`` walks a folder (each directory, then its sorted entries);
folders 0755, files 0644, root-owned, float mtimes (hence a PAX ``mtime``
record per member). We reproduce that member by member, but without a folder
on disk: every file is produced by a generator, spooled (in memory up to
16 MiB, then a temporary file) to learn its size, and streamed into the
archive, so even a multi-GB archive never sits in memory. The gzip header's
mtime is the run group's time, which makes the bytes a function of the seed.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import random
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from job.demo.synthetic import aide, others, outcomes
from job.demo.synthetic.catalog import (
    AGENTS,
    TASKS,
    Task,
    created_at,
    experiment_name,
    run_group_name,
    run_uuid,
)
from job.demo.synthetic.terminal import RunData

SPOOL_BYTES = 16 * 1024 * 1024
EPOCH = datetime(2025, 8, 25, 17, 9, 5, tzinfo=UTC)


@dataclass(frozen=True)
class RunSpec:
    """One run inside a run group; its files are a function of ``rng_seed``."""

    agent: str
    task: Task
    uuid: str
    seed: int  # biomlbench's seed index for this task
    exp_name: str
    rng_seed: int
    steps: int
    verbose_log_bytes: int | None = None
    submission_rows: int | None = None
    blob_bytes: int = 0

    @property
    def run_id(self) -> str:
        """``<domain>/<task>_<uuid>``: the key in metadata.json and the folder path."""
        return f"{self.task.domain}/{self.task.name}_{self.uuid}"

    @property
    def journal_path(self) -> str | None:
        return f"{self.run_id}/logs/{self.exp_name}/journal.json" if self.agent == "aide" else None


@dataclass(frozen=True)
class RunGroupSpec:
    """A whole failed run group: what ``write_archive`` turns into one ``.tar.gz``."""

    name: str
    agent: str
    when: datetime
    runs: tuple[RunSpec, ...]
    size_bytes: int | None = None  # fill logs/submissions up to about this extracted size
    compresslevel: int = 9

    def key(self, prefix: str, layout: str = "flat") -> str:
        """The S3 key: flat ``<prefix><group>.tar.gz`` or cloud ``<prefix><agent>/<task>/<group>.tar.gz``."""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if layout == "cloud":
            return f"{prefix}{self.agent}/{self.runs[0].task.task_id}/{self.name}.tar.gz"
        if layout != "flat":
            raise ValueError(f"layout must be 'flat' or 'cloud', got {layout!r}")
        return f"{prefix}{self.name}.tar.gz"

    def metadata(self) -> dict[str, Any]:
        return {
            "run_group": self.name,
            "created_at": created_at(self.when),
            "runs": {
                r.run_id: {
                    "task_id": r.task.task_id,
                    "agent_id": r.agent,
                    "seed": r.seed,
                    "success": run_mode(r, self.when) == outcomes.SUCCEEDED,
                }
                for r in self.runs
            },
            "agent_id": self.agent,
            "task_ids": sorted({r.task.task_id for r in self.runs}),
            "n_seeds": max(r.seed for r in self.runs) + 1,
            "n_workers": 1,
        }

    def expected(self) -> dict[str, Any]:
        """Ground truth in the shape of the samples' ``expected.json`` entry (renders the journals)."""
        journals = []
        for run in self.runs:
            if run.agent != "aide":
                continue
            nodes, _ = _simulate(run, self.when)
            entry = {
                "run_id": run.run_id,
                "task": run.task.task_id,
                "exp": run.exp_name,
                "path": f"{self.name}/{run.journal_path}",
            }
            entry.update(aide.summary(nodes, run.task))
            journals.append(entry)
        return {"run_group": self.name, "agent": self.agent, "journals": journals}


def generate_run_group(
    rng_or_seed: random.Random | int,
    *,
    agent: str = "aide",
    n_runs: int = 3,
    steps: int = 12,
    when: datetime | None = None,
    size_bytes: int | None = None,
    verbose_log_bytes: int | None = None,
    submission_rows: int | None = None,
    blob_bytes: int = 0,
    compresslevel: int = 9,
) -> RunGroupSpec:
    """Draw a run group. Cheap: nothing is rendered until ``write_archive``.

    ``size_bytes`` asks for about that many extracted bytes: journals are what
    ``steps`` makes them, and the remainder goes to ``aide.verbose.log`` (agent
    logs for other agents) and the submission CSVs, unless those are given
    explicitly. ``blob_bytes`` adds an incompressible ``code/model_fold0.pt`` to
    the first run (for archives that are big on the wire).
    """
    rng = rng_or_seed if isinstance(rng_or_seed, random.Random) else random.Random(rng_or_seed)
    if agent not in AGENTS:
        raise ValueError(f"agent must be one of {AGENTS}, got {agent!r}")
    if when is None:
        when = EPOCH + timedelta(seconds=rng.randrange(0, 90 * 24 * 3600))
    tasks = rng.sample(TASKS, k=min(len(TASKS), rng.choice((1, 1, 2, 3))))
    per_task: dict[str, int] = {}
    runs = []
    for i in range(n_runs):
        task = tasks[i % len(tasks)] if i < len(tasks) else rng.choice(tasks)
        seed = per_task.get(task.task_id, 0)
        per_task[task.task_id] = seed + 1
        runs.append(
            RunSpec(
                agent=agent,
                task=task,
                uuid=run_uuid(rng),
                seed=seed,
                exp_name=experiment_name(rng),
                rng_seed=rng.getrandbits(63),
                steps=steps,
                verbose_log_bytes=verbose_log_bytes,
                submission_rows=submission_rows,
                blob_bytes=blob_bytes if i == 0 else 0,
            )
        )
    return RunGroupSpec(
        name=run_group_name(when, agent),
        agent=agent,
        when=when,
        runs=tuple(runs),
        size_bytes=size_bytes,
        compresslevel=compresslevel,
    )


# --- rendering a run ------------------------------------------------------------------


def _simulate(run: RunSpec, when: datetime) -> tuple[list[aide.Node], RunData]:
    rng = random.Random(run.rng_seed)
    data = RunData.draw(rng)
    nodes = aide.simulate(rng, run.task, run.steps, when.timestamp() + run.seed * 3600, data)
    return nodes, data


@functools.lru_cache(maxsize=256)
def run_mode(run: RunSpec, when: datetime) -> str:
    """How the run ends (:mod:`job.demo.synthetic.outcomes`): the ground truth of its verdict.

    For AIDE it depends on whether the journal found a valid step, so the journal
    is simulated here (cached: metadata.json and the run's files both ask).
    """
    drawn = outcomes.draw_mode(run.agent, run.rng_seed)
    if run.agent != "aide":
        return drawn
    nodes, _ = _simulate(run, when)
    return outcomes.aide_mode(drawn, aide.best_index(nodes, run.task) is not None)


Content = bytes | IO[bytes] | Callable[[], Iterable[bytes | str]]


@dataclass
class _Entry:
    path: str  # relative to the run group folder
    content: Content | None  # None: a directory
    mtime: float
    limit: int | None = None  # cut a generated file to exactly this many bytes
    exact: bool = False  # the generator yields at least ``limit`` bytes: stream, don't spool


@dataclass
class _RunFiles:
    """All of one run's files, rendered lazily and sized against the run's budget."""

    run: RunSpec
    when: datetime
    budget: int | None
    entries: list[_Entry] = field(default_factory=list)

    def build(self) -> None:
        run, rng = self.run, random.Random(self.run.rng_seed ^ 0x5EED)
        base = self.when.timestamp() + run.seed * 3600
        root = run.run_id
        end = base + 3600 * 6
        if run.agent == "aide":
            self._aide(rng, root, base, end)
        else:
            self._other(rng, root, base, end)

    def _aide(self, rng: random.Random, root: str, base: float, end: float) -> None:
        run = self.run
        nodes, data = _simulate(run, self.when)
        end = (nodes[-1].json["ctime"] + nodes[-1].json["exec_time"]) if nodes else end
        journal = _spool(aide.journal_chunks(nodes))
        tree = _spool(aide.tree_plot_chunks(nodes, run.exp_name))
        small = {
            "aide.log": aide.aide_log(nodes, run.exp_name, base).encode(),
            "best_solution.py": aide.best_solution(nodes, run.task).encode(),
            "config.yaml": aide.config_yaml(
                run.task, run.exp_name, root, run.steps, data, rng
            ).encode(),
        }
        has_good = aide.best_index(nodes, run.task) is not None
        mode = run_mode(run, self.when)
        end_of_run = outcomes.ending(
            random.Random(run.rng_seed ^ 0xE4D),
            agent="aide",
            task=run.task,
            seed=run.seed,
            mode=mode,
            start=base,
        )
        run_log = end_of_run.run_log.encode()
        submits = mode == outcomes.SUCCEEDED
        fixed = _size(journal) + _size(tree) + sum(map(len, small.values())) + len(run_log)
        verbose_bytes, sub_bytes = self._split(fixed, has_submission=submits, log_share=0.5)
        if run.verbose_log_bytes is not None:
            verbose_bytes = run.verbose_log_bytes
        exp = f"{root}/logs/{run.exp_name}"
        self.entries += [_Entry(f"{root}/code", None, end)]
        if has_good:
            self.entries.append(_Entry(f"{root}/code/solution.py", small["best_solution.py"], end))
        if run.blob_bytes:
            self.entries.append(
                _Entry(
                    f"{root}/code/model_fold0.pt",
                    _blob(run.rng_seed, run.blob_bytes),
                    end,
                    run.blob_bytes,
                )
            )
        self.entries += [
            _Entry(f"{root}/logs", None, end),
            _Entry(exp, None, end),
            _Entry(f"{exp}/aide.log", small["aide.log"], end),
            _Entry(
                f"{exp}/aide.verbose.log",
                lambda: aide.verbose_log_chunks(
                    nodes,
                    run.task,
                    data,
                    run.exp_name,
                    base,
                    random.Random(run.rng_seed + 1),
                    endless=verbose_bytes is not None,
                ),
                end,
                verbose_bytes,
                exact=verbose_bytes is not None,
            ),
            _Entry(f"{exp}/best_solution.py", small["best_solution.py"], end),
            _Entry(f"{exp}/config.yaml", small["config.yaml"], end),
            _Entry(f"{exp}/journal.json", journal, end),
            _Entry(f"{exp}/tree_plot.html", tree, end),
            _Entry(f"{root}/run.log", run_log, end),
            _Entry(f"{root}/submission", None, end),
        ]
        self._submission_files(root, end_of_run, data, sub_bytes, end)

    def _other(self, rng: random.Random, root: str, base: float, end: float) -> None:
        run = self.run
        mode = run_mode(run, self.when)
        end_of_run = outcomes.ending(
            random.Random(run.rng_seed ^ 0xE4D),
            agent=run.agent,
            task=run.task,
            seed=run.seed,
            mode=mode,
            start=base,
            traceback=others.crash_traceback(rng, run.agent, run.task, run.run_id),
        )
        run_log = end_of_run.run_log.encode()
        has_submission = mode == outcomes.SUCCEEDED
        log_bytes, sub_bytes = self._split(
            len(run_log), has_submission=has_submission, log_share=0.85
        )
        if run.verbose_log_bytes is not None:
            log_bytes = run.verbose_log_bytes
        elif self.budget is None:
            log_bytes = rng.randrange(20_000, 400_000)
        log_seed = rng.getrandbits(32)
        tail = end_of_run.agent_tail.encode()
        self.entries += [
            _Entry(f"{root}/code", None, end),
            _Entry(f"{root}/logs", None, end),
            _Entry(
                f"{root}/logs/agent.log",
                lambda: _with_tail(
                    others.agent_log_chunks(random.Random(log_seed), run.agent, run.task, base),
                    tail,
                    log_bytes,
                ),
                end,
            ),
            _Entry(f"{root}/run.log", run_log, end),
            _Entry(f"{root}/submission", None, end),
        ]
        if run.blob_bytes:
            self.entries.append(
                _Entry(
                    f"{root}/code/model_fold0.pt",
                    _blob(run.rng_seed, run.blob_bytes),
                    end,
                    run.blob_bytes,
                )
            )
        self._submission_files(root, end_of_run, RunData.draw(rng), sub_bytes, end)

    def _submission_files(
        self,
        root: str,
        end_of_run: outcomes.Ending,
        data: RunData,
        sub_bytes: int | None,
        at: float,
    ) -> None:
        """A real submission CSV for a run that succeeded; the wrong files for a submission error."""
        for name, body in end_of_run.submission.items():
            if body is None:
                self._submission(root, data, sub_bytes, at)
            else:
                self.entries.append(_Entry(f"{root}/submission/{name}", body, at))

    def _split(
        self, fixed: int, *, has_submission: bool, log_share: float
    ) -> tuple[int | None, int | None]:
        """Divide what the budget leaves after the fixed files between the log and the CSV."""
        if self.budget is None:
            return None, None
        rest = max(self.budget - fixed, 0)
        if not has_submission:
            return max(rest, 4096), None
        return max(int(rest * log_share), 4096), max(rest - int(rest * log_share), 256)

    def _submission(self, root: str, data: RunData, sub_bytes: int | None, end: float) -> None:
        rows = self.run.submission_rows
        if rows is None and sub_bytes is None:
            rows = data.n_test
        seed = self.run.rng_seed + 2
        self.entries.append(
            _Entry(
                f"{root}/submission/submission.csv",
                lambda: _submission_rows(random.Random(seed), self.run.task, rows, sub_bytes),
                end,
            )
        )


def _with_tail(chunks: Iterable[str], tail: bytes, size: int | None) -> Iterator[bytes]:
    """A log cut to ``size`` bytes that still ends with the error that killed the run."""
    body = (size or 0) - len(tail)
    if body > 0:
        yield from _cut((c.encode() for c in chunks), body)
    yield tail


def _cut(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    left = size
    for chunk in chunks:
        if len(chunk) >= left:
            yield chunk[: left - 1] + b"\n" if left > 0 else b""
            return
        left -= len(chunk)
        yield chunk


def _blob(seed: int, size: int) -> Callable[[], Iterator[bytes]]:
    """Incompressible bytes (a saved checkpoint), generated 1 MiB at a time."""

    def chunks() -> Iterator[bytes]:
        rng = random.Random(seed ^ 0xB10B)
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            yield rng.randbytes(n)
            left -= n

    return chunks


_AMINO = "ACDEFGHIKLMNPQRSTVWY"
_SMILES_PARTS = (
    "C",
    "CC",
    "c1ccccc1",
    "N",
    "O",
    "C(=O)",
    "Cl",
    "F",
    "S(=O)(=O)",
    "c1ccncc1",
    "C#N",
    "OC",
    "N(C)C",
    "CCO",
    "C1CC1",
    "Br",
)


def _submission_rows(
    rng: random.Random, task: Task, rows: int | None, size: int | None
) -> Iterator[bytes]:
    """``submission/submission.csv`` rows for the task's id and target, ``rows`` or about ``size`` bytes."""
    yield f"{task.id_col},{task.target}\n".encode()
    written = 0
    i = 0
    while (rows is not None and i < rows) or (rows is None and size is not None and written < size):
        batch = []
        for _ in range(512):
            if task.kind == "smiles":
                ident = "".join(rng.choice(_SMILES_PARTS) for _ in range(rng.randrange(3, 9)))
            elif task.kind == "sequence":
                ident = ":".join(
                    f"{rng.choice(_AMINO)}{rng.randrange(1, 600)}{rng.choice(_AMINO)}"
                    for _ in range(rng.choice((1, 1, 2, 3)))
                )
            elif task.kind == "singlecell":
                ident = "".join(rng.choice("ACGT") for _ in range(16)) + f"-{rng.randrange(1, 4)}"
            else:
                ident = f"{rng.getrandbits(64):016x}"
            batch.append(f"{ident},{rng.gauss(0, 1.2):.6f}\n")
            i += 1
            if rows is not None and i >= rows:
                break
        chunk = "".join(batch).encode()
        written += len(chunk)
        yield chunk


# --- spooling and tar writing -----------------------------------------------------------


def _encoded(chunks: Iterable[bytes | str]) -> Iterator[bytes]:
    return (c.encode() if isinstance(c, str) else c for c in chunks)


class _GenReader:
    """A ``read(n)`` view of a chunk generator, for files whose size is known up front."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def _spool(chunks: Iterable[bytes | str], limit: int | None = None) -> IO[bytes]:
    """Write generated content to a spooled temp file; ``limit`` cuts it (ending in a newline)."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
    encoded = _encoded(chunks)
    for chunk in _cut(encoded, limit) if limit is not None else encoded:
        spool.write(chunk)
    return spool


def _size(f: IO[bytes]) -> int:
    f.seek(0, io.SEEK_END)
    return f.tell()


def _member(path: str, mtime: float, *, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.mtime = mtime  # float: tarfile writes a PAX mtime record, as for files on disk
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.mode = 0o644
        info.size = size
    return info


def _tree_order(entries: list[_Entry]) -> list[_Entry]:
    """The order of ``tarfile.add`` on a folder: a directory, then its entries sorted by name."""
    by_path = {e.path: e for e in entries}
    children: dict[str, list[str]] = {}
    for path in list(by_path):
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            sub = "/".join(parts[:depth])
            parent = "/".join(parts[: depth - 1])
            if sub not in by_path:
                by_path[sub] = _Entry(sub, None, by_path[path].mtime)
            kids = children.setdefault(parent, [])
            if sub not in kids:
                kids.append(sub)
    ordered: list[_Entry] = []

    def walk(parent: str) -> None:
        for sub in sorted(children.get(parent, []), key=lambda p: p.rsplit("/", 1)[-1]):
            ordered.append(by_path[sub])
            walk(sub)

    walk("")
    return ordered


def write_archive(spec: RunGroupSpec, dest: Path) -> Path:
    """Write ``spec`` as ``<run_group>.tar.gz``; ``dest`` is that file or the folder for it.

    Written to a temporary name first and renamed, so a reader never sees half an archive.
    """
    dest = Path(dest)
    path = (
        dest / f"{spec.name}.tar.gz" if dest.is_dir() or not dest.name.endswith(".tar.gz") else dest
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    mtime_gz = int(spec.when.timestamp())
    budget = None
    meta = json.dumps(spec.metadata(), indent=4).encode()
    if spec.size_bytes is not None:
        blobs = sum(r.blob_bytes for r in spec.runs)
        budget = max((spec.size_bytes - len(meta) - blobs) // max(len(spec.runs), 1), 0)
    try:
        with (
            open(partial, "wb") as raw,
            gzip.GzipFile(
                filename=path.name,
                mode="wb",
                compresslevel=spec.compresslevel,
                fileobj=raw,
                mtime=mtime_gz,
            ) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            _write_members(tar, spec, meta, budget)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def _write_members(
    tar: tarfile.TarFile, spec: RunGroupSpec, meta: bytes, budget: int | None
) -> None:
    top_time = spec.when.timestamp() + 6 * 3600
    runs = {r.run_id: r for r in spec.runs}
    run_dirs = sorted(runs)  # the domain folders interleave runs in name order
    entries: list[_Entry] = [_Entry("metadata.json", meta, top_time)]
    # Only the paths are needed to decide the order; a run's files are rendered when reached.
    for run_id in run_dirs:
        entries.append(_Entry(run_id, None, top_time))
    order = _tree_order(entries)
    tar.addfile(_member(spec.name, top_time, directory=True))
    for entry in order:
        if entry.path in runs:
            files = _RunFiles(runs[entry.path], spec.when, budget)
            files.build()
            tar.addfile(_member(f"{spec.name}/{entry.path}", entry.mtime, directory=True))
            for sub in _tree_order(files.entries):
                if sub.path == entry.path or not sub.path.startswith(entry.path + "/"):
                    continue
                _add(tar, f"{spec.name}/{sub.path}", sub)
        else:
            _add(tar, f"{spec.name}/{entry.path}", entry)


def _add(tar: tarfile.TarFile, name: str, entry: _Entry) -> None:
    if entry.content is None:
        tar.addfile(_member(name, entry.mtime, directory=True))
        return
    if isinstance(entry.content, bytes):
        tar.addfile(_member(name, entry.mtime, size=len(entry.content)), io.BytesIO(entry.content))
        return
    if entry.exact and entry.limit is not None and callable(entry.content):
        reader = _GenReader(_cut(_encoded(entry.content()), entry.limit))
        tar.addfile(_member(name, entry.mtime, size=entry.limit), reader)  # type: ignore[arg-type]
        return
    if hasattr(entry.content, "read"):
        spool: IO[bytes] = entry.content  # type: ignore[assignment]
    else:
        spool = _spool(entry.content(), entry.limit)
    try:
        size = _size(spool)
        spool.seek(0)
        tar.addfile(_member(name, entry.mtime, size=size), spool)
    finally:
        spool.close()
