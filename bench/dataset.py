"""The bench's input: a generated bucket on disk, cached by its parameters.

Generating 40 archives of 8 MB takes a while and must not be part of any timing,
so a dataset is written once under ``<cache>/<key>/root/<bucket>/<prefix>`` (the
folder ``LocalS3`` serves) and reused while its parameters and the generator's
source are unchanged. ``stats.json`` beside it records what every contender must
produce (bytes extracted, journals, steps), computed by reading the archives.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import job.demo.synthetic
from job.demo.synthetic import big_archive_spec, plan_bucket, seed_bucket, write_archive

BUCKET = "biomlbench"
PREFIX = "v1/artifacts/failed_runs/"


@dataclass(frozen=True)
class Params:
    """Everything that decides a dataset's bytes."""

    archives: int
    steps: int
    size_mb: float | None
    runs_per_group: int
    agents: tuple[str, ...] = ("aide",)
    seed: int = 0
    big_archive_gb: float = 0.0
    verbose_log_bytes: int | None = None

    def key(self) -> str:
        src = Path(job.demo.synthetic.__file__).parent
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode())
        for path in sorted(src.glob("*.py")):
            digest.update(path.read_bytes())  # a generator change invalidates the cache
        return digest.hexdigest()[:16]


@dataclass
class Dataset:
    params: Params
    root: Path  # served by LocalS3: root/<bucket>/<prefix>...
    archives: int
    compressed_bytes: int
    extracted_bytes: int
    files: int
    journals: int
    journal_bytes: int
    steps: int

    @property
    def bucket_path(self) -> str:
        return f"s3://{BUCKET}/{PREFIX}"

    @property
    def archive_dir(self) -> Path:
        return self.root / BUCKET / PREFIX

    def describe(self) -> str:
        return (
            f"{self.archives} archives, {self.compressed_bytes / 2**20:.1f} MB compressed, "
            f"{self.extracted_bytes / 2**20:.1f} MB extracted in {self.files} files; "
            f"{self.journals} AIDE journals, {self.steps} steps, {self.journal_bytes / 2**20:.1f} MB of journal"
        )

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("root", "params")}
        out["params"] = asdict(self.params)
        return out


def prepare(cache: Path, params: Params, *, workers: int = 2, log: Any = print) -> Dataset:
    """The dataset for ``params``, generating it first if the cache doesn't have it."""
    home = cache / params.key()
    stats_file = home / "stats.json"
    root = home / "root"
    if stats_file.exists():
        stats = json.loads(stats_file.read_text())
        return Dataset(params=params, root=root, **stats)
    log(f"generating dataset {home.name}: {params}")
    sizes: dict[str, Any] = {"steps": params.steps, "n_runs": params.runs_per_group}
    if params.verbose_log_bytes is not None:
        sizes["verbose_log_bytes"] = params.verbose_log_bytes
    seed_bucket(
        root,
        bucket=BUCKET,
        prefix=PREFIX,
        n_archives=params.archives,
        agents=params.agents,
        seed=params.seed,
        workers=workers,
        size_mb=params.size_mb,
        **sizes,
    )
    journals = sum(
        sum(1 for r in spec.runs if r.agent == "aide")
        for _, spec in plan_bucket(
            prefix=PREFIX,
            n_archives=params.archives,
            agents=params.agents,
            seed=params.seed,
            size_mb=params.size_mb,
            **sizes,
        )
    )
    steps = journals * params.steps
    if params.big_archive_gb > 0:
        big = big_archive_spec(
            int(params.big_archive_gb * 2**30), seed=params.seed, steps=params.steps
        )
        write_archive(big, root / BUCKET / PREFIX)
        journals += len(big.runs)
        steps += sum(r.steps for r in big.runs)
    stats = _scan(root / BUCKET / PREFIX)
    stats.update(journals=journals, steps=steps)
    stats_file.write_text(json.dumps(stats, indent=2))
    return Dataset(params=params, root=root, **stats)


def _scan(folder: Path) -> dict[str, int]:
    """Sizes every contender must reproduce, read from the archives themselves."""
    archives = compressed = extracted = files = journal_bytes = 0
    for path in sorted(folder.rglob("*.tar.gz")):
        archives += 1
        compressed += path.stat().st_size
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                if member.isfile():
                    files += 1
                    extracted += member.size
                    if member.name.endswith("/journal.json"):
                        journal_bytes += member.size
    return {
        "archives": archives,
        "compressed_bytes": compressed,
        "extracted_bytes": extracted,
        "files": files,
        "journal_bytes": journal_bytes,
    }


def tree_bytes(folder: Path, *, suffix: str | None = None) -> tuple[int, int]:
    """(files, bytes) of regular files under ``folder``, optionally only ``*suffix``."""
    import os

    count = total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if suffix and not name.endswith(suffix):
                continue
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if st.st_mode & 0o170000 == 0o100000:
                count += 1
                total += st.st_size
    return count, total
