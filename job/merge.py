"""Combine what N sharded workers wrote into the single files an unsharded run writes.

Each shard keeps its own ``manifest.shard-I-of-N.json`` (and the parse stage its own
``index.shard-I-of-N.json``) so workers on different machines never write the same
file. Once every shard has finished, ``analyze-failures merge`` folds them into
``manifest.json`` and ``index.json`` and removes the shard files, leaving a tree
identical in shape to an unsharded run's.
"""

from __future__ import annotations

from pathlib import Path

from job.model.manifest import Manifest, load, manifest_files, manifest_path


def merge_manifests(failed_runs_dir: Path) -> int:
    """Fold every manifest file into ``manifest.json``; returns the number of records."""
    files = manifest_files(failed_runs_dir)
    shard_files = [f for f in files if f != manifest_path(failed_runs_dir)]
    if not shard_files:
        return len(load(failed_runs_dir))
    records = load(failed_runs_dir)
    merged = Manifest(failed_runs_dir, keep=records)
    merged.save(force=True)
    for path in shard_files:
        path.unlink(missing_ok=True)
    return len(records)


def merge_outputs(root: Path) -> dict[str, int]:
    """Merge a ``run`` output root: ROOT/failed_runs manifests and ROOT/aide_journals indexes."""
    counts = {"archives": merge_manifests(root / "failed_runs")}
    journals = root / "aide_journals"
    if journals.is_dir() and any(journals.glob("index.shard-*-of-*.json")):
        from job.parse.stage import merge_indexes

        index = merge_indexes(journals)
        for shard_file in journals.glob("index.shard-*-of-*.json"):
            shard_file.unlink(missing_ok=True)
        import orjson

        counts["journals"] = len(orjson.loads(index.read_bytes()).get("journals", []))
    return counts
