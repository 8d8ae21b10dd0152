"""job.demo.synthetic: deterministic, biomlbench-shaped, AIDE-shaped, sized as asked.

Why these checks: the demo, the bench and other tests trust the generator to
stand in for real uploads. If it drifted from biomlbench's layout or from
AIDE's serializer, everything built on it would test the wrong thing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from job.demo.synthetic import (
    big_archive_spec,
    generate_run_group,
    plan_bucket,
    seed_bucket,
    write_archive,
)
from tests.conftest import SAMPLES

NODE_KEYS = [
    "code",
    "plan",
    "step",
    "id",
    "ctime",
    "parent",
    "children",
    "_term_out",
    "exec_time",
    "exc_type",
    "exc_info",
    "exc_stack",
    "analysis",
    "metric",
    "is_buggy",
]


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getmembers()


def _journals(path: Path) -> dict[str, dict[str, Any]]:
    out = {}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            if m.name.endswith("/journal.json"):
                f = tar.extractfile(m)
                assert f is not None
                out[m.name] = json.load(f)
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = write_archive(generate_run_group(7, steps=15), tmp_path / "a")
    b = write_archive(generate_run_group(7, steps=15), tmp_path / "b")
    c = write_archive(generate_run_group(8, steps=15), tmp_path / "c")
    assert a.name == b.name
    assert _sha(a) == _sha(b)
    assert _sha(a) != _sha(c)


def test_seed_bucket_is_deterministic_and_independent_of_workers(tmp_path: Path) -> None:
    one = seed_bucket(tmp_path / "one", n_archives=4, seed=3, steps=8, agents=("aide", "biomni"))
    two = seed_bucket(
        tmp_path / "two", n_archives=4, seed=3, steps=8, agents=("aide", "biomni"), workers=2
    )
    assert [p.relative_to(tmp_path / "one") for p in one] == [
        p.relative_to(tmp_path / "two") for p in two
    ]
    assert [_sha(p) for p in one] == [_sha(p) for p in two]
    assert all(
        p.parent == tmp_path / "one" / "biomlbench" / "v1/artifacts/failed_runs" for p in one
    )


def test_archive_is_what_biomlbench_writes(tmp_path: Path) -> None:
    """Same members, order, types and modes as tarfile.add of the extracted folder."""
    spec = generate_run_group(11, n_runs=3, steps=10)
    ours = write_archive(spec, tmp_path)
    raw = ours.read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08"
    assert raw[8] == 2
    assert gzip.decompress(raw)  # one valid gzip stream

    extracted = tmp_path / "x"
    with tarfile.open(ours, "r:gz") as tar:
        tar.extractall(extracted, filter="data")
    again = tmp_path / "again.tar.gz"
    with tarfile.open(again, "w:gz") as tar:
        tar.add(extracted / spec.name, arcname=spec.name)

    mine, theirs = _members(ours), _members(again)
    assert [m.name for m in mine] == [m.name for m in theirs]
    assert [m.type for m in mine] == [m.type for m in theirs]
    assert [m.mode for m in mine] == [m.mode for m in theirs]
    assert mine[0].name == spec.name
    assert mine[0].isdir()
    assert all(m.name == spec.name or m.name.startswith(spec.name + "/") for m in mine)
    assert "mtime" in mine[1].pax_headers  # float mtimes, as files on disk give


def test_layout_and_metadata(tmp_path: Path) -> None:
    spec = generate_run_group(2, n_runs=3, steps=6)
    path = write_archive(spec, tmp_path)
    names = {m.name for m in _members(path)}
    with tarfile.open(path, "r:gz") as tar:
        f = tar.extractfile(f"{spec.name}/metadata.json")
        assert f is not None
        meta = json.load(f)
    assert meta == spec.metadata()
    assert meta["run_group"] == spec.name
    assert spec.name.endswith("-GMT_run-group_aide")
    assert set(meta["runs"]) == {r.run_id for r in spec.runs}
    assert all(run["success"] is False for run in meta["runs"].values())
    for run in spec.runs:
        base = f"{spec.name}/{run.run_id}"
        exp = f"{base}/logs/{run.exp_name}"
        for required in ("run.log", "code", "submission", "logs"):
            assert f"{base}/{required}" in names
        for required in (
            "journal.json",
            "aide.log",
            "aide.verbose.log",
            "config.yaml",
            "best_solution.py",
            "tree_plot.html",
        ):
            assert f"{exp}/{required}" in names


@pytest.mark.parametrize("layout", ["flat", "cloud", "mixed"])
def test_bucket_layouts(layout: str) -> None:
    planned = plan_bucket(n_archives=12, layout=layout, agents=("aide", "stella"), seed=1, steps=3)
    keys = [k for k, _ in planned]
    assert len(set(keys)) == 12
    assert all(k.startswith("v1/artifacts/failed_runs/") and k.endswith(".tar.gz") for k in keys)
    depths = {k.count("/") for k in keys}
    flat, cloud = 3, 6  # v1/artifacts/failed_runs/<agent>/<domain>/<task>/<group>.tar.gz
    assert depths == {"flat": {flat}, "cloud": {cloud}, "mixed": {flat, cloud}}[layout]
    for key, spec in planned:
        if key.count("/") == cloud:
            assert key.split("/")[3] == spec.agent


def _sample_journal() -> dict[str, Any]:
    found = sorted((SAMPLES / "bucket").rglob("*.tar.gz"))
    assert found, f"the committed fixture is missing: {SAMPLES}"
    return next(iter(_journals(found[0]).values()))


def test_journal_has_aides_keys_types_and_nulls(tmp_path: Path) -> None:
    sample = _sample_journal()
    assert list(sample["nodes"][0]) == NODE_KEYS  # the reference really looks like this

    paths = seed_bucket(tmp_path, n_archives=3, seed=5, steps=40, n_runs=2)
    journals = [j for p in paths for j in _journals(p).values()]
    assert journals
    for journal in journals:
        assert list(journal) == ["nodes", "node2parent", "__version"]
        assert journal["__version"] == "2"
        ids = [n["id"] for n in journal["nodes"]]
        assert len(set(ids)) == len(ids) == 40
        step_of = {n["id"]: n["step"] for n in journal["nodes"]}
        for child, parent in journal["node2parent"].items():
            assert step_of[parent] < step_of[child]
        for node in journal["nodes"]:
            _check_node(node)


def _check_node(node: dict[str, Any]) -> None:
    assert list(node) == NODE_KEYS
    assert node["parent"] is None
    assert node["children"] == []
    assert isinstance(node["code"], str)
    assert isinstance(node["plan"], str)
    assert node["plan"]
    assert isinstance(node["ctime"], float)
    assert isinstance(node["exec_time"], float)
    assert len(node["id"]) == 32
    assert isinstance(node["_term_out"], list)
    assert all(isinstance(x, str) for x in node["_term_out"])
    last = node["_term_out"][-1]
    assert last.startswith("Execution time: ") or last.startswith(
        "TimeoutError: Execution exceeded"
    )
    metric = node["metric"]
    assert set(metric) == {"value", "maximize"}
    if node["is_buggy"]:
        assert metric == {"value": None, "maximize": None}
    else:
        assert isinstance(metric["value"], float)
        assert isinstance(metric["maximize"], bool)
        assert node["exc_type"] is None
        assert node["exc_info"] is None
        assert node["exc_stack"] is None
    if node["exc_type"] is not None:
        assert node["is_buggy"]
        assert isinstance(node["exc_info"]["args"], list)
        assert all(isinstance(a, str) for a in node["exc_info"]["args"])
        stack = node["exc_stack"]
        assert stack[0][0].endswith("aide/interpreter.py")
        assert stack[0][2] == "_run_session"
        for file, line, func, source in stack:
            assert isinstance(file, str)
            assert isinstance(line, int)
            assert isinstance(func, str)
            assert isinstance(source, str)
            if file == "runfile.py" and func == "<module>":
                # the frame points at the line that really holds the statement
                assert node["code"].split("\n")[line - 1].strip() == source
        tb = "".join(node["_term_out"])
        assert "Traceback (most recent call last):" in tb


def test_tree_and_failures_are_varied(tmp_path: Path) -> None:
    paths = seed_bucket(tmp_path, n_archives=6, seed=9, steps=60, n_runs=2)
    kinds: Counter[str] = Counter()
    exc_types: Counter[str] = Counter()
    messages: set[str] = set()
    maximize: set[bool] = set()
    plans: set[str] = set()
    for journal in (j for p in paths for j in _journals(p).values()):
        by_id = {n["id"]: n for n in journal["nodes"]}
        good = [n for n in journal["nodes"] if not n["is_buggy"]]
        maximize |= {n["metric"]["maximize"] for n in good}
        plans |= {n["plan"] for n in journal["nodes"]}
        for node in journal["nodes"]:
            parent = journal["node2parent"].get(node["id"])
            kinds[
                "draft" if parent is None else ("debug" if by_id[parent]["is_buggy"] else "improve")
            ] += 1
            if node["exc_type"]:
                exc_types[node["exc_type"]] += 1
                messages.add(
                    "".join(node["_term_out"]).rsplit("Traceback", 1)[-1].strip().splitlines()[-2]
                )
    assert kinds["draft"]
    assert kinds["debug"]
    assert kinds["improve"]
    assert {"ModuleNotFoundError", "KeyError", "TimeoutError"} <= set(exc_types)
    assert {"ValueError", "FileNotFoundError"} & set(exc_types)
    assert len(exc_types) >= 6
    assert len(plans) > 0.9 * sum(kinds.values())  # not one repeated string
    assert maximize == {True, False}
    assert len(messages) > 10  # many distinct exception messages


def test_some_runs_never_find_a_good_node() -> None:
    hopeless = 0
    for seed in range(30):
        spec = generate_run_group(seed, n_runs=1, steps=15)
        journal = spec.expected()["journals"][0]
        hopeless += journal["buggy_steps"] == journal["steps"]
    assert 0 < hopeless < 30


def test_expected_matches_the_archive(tmp_path: Path) -> None:
    spec = generate_run_group(4, n_runs=2, steps=25)
    path = write_archive(spec, tmp_path)
    journals = _journals(path)
    for entry in spec.expected()["journals"]:
        journal = journals[entry["path"]]
        nodes = journal["nodes"]
        assert entry["steps"] == len(nodes)
        assert entry["buggy_steps"] == sum(n["is_buggy"] for n in nodes)
        assert entry["node_ids"] == [n["id"] for n in nodes]
        assert entry["exc_types"] == dict(Counter(n["exc_type"] for n in nodes if n["exc_type"]))
        values = [n["metric"]["value"] for n in nodes if not n["is_buggy"]]
        if values:
            assert entry["best_metric"] == (max(values) if entry["maximize"] else min(values))
        else:
            assert entry["best_metric"] is None


@pytest.mark.parametrize("agent", ["biomni", "stella", "mlagentbench"])
def test_other_agents_have_logs_not_journals(tmp_path: Path, agent: str) -> None:
    spec = generate_run_group(3, agent=agent, n_runs=2)
    path = write_archive(spec, tmp_path)
    names = [m.name for m in _members(path)]
    assert not any(n.endswith("journal.json") for n in names)
    assert spec.metadata()["agent_id"] == agent
    with tarfile.open(path, "r:gz") as tar:
        for run in spec.runs:
            f = tar.extractfile(f"{spec.name}/{run.run_id}/run.log")
            assert f is not None
            text = f.read().decode()
            # biomlbench's logger format, and one of its end-of-run messages.
            assert text.startswith("[20")
            assert "] [run.py:88] [Worker 0] Running seed" in text.split("\n", 1)[0]
            assert any(
                end in text
                for end in ("failed internally", "Run failed for seed", "Agent succeeded")
            )
            log = tar.extractfile(f"{spec.name}/{run.run_id}/logs/agent.log")
            assert log is not None
            assert log.read()


def test_sizes_roughly_as_asked(tmp_path: Path) -> None:
    target = 8 * 1024 * 1024  # the bench's default archive
    spec = generate_run_group(1, n_runs=2, steps=100, size_bytes=target)
    path = write_archive(spec, tmp_path)
    extracted = sum(m.size for m in _members(path))
    assert 0.7 * target < extracted < 1.6 * target
    ratio = extracted / path.stat().st_size
    assert 2.5 < ratio < 15, ratio
    for journal in _journals(path).values():
        raw = json.dumps(journal, separators=(",", ":")).encode()
        journal_ratio = len(raw) / len(zlib.compress(raw, 9))
        assert 3 < journal_ratio < 14, journal_ratio  # like real journals, not 100x


def test_explicit_sizes_are_exact(tmp_path: Path) -> None:
    spec = generate_run_group(6, n_runs=1, steps=5, verbose_log_bytes=123_457, blob_bytes=50_000)
    path = write_archive(spec, tmp_path)
    sizes = {m.name.rsplit("/", 1)[-1]: m.size for m in _members(path)}
    assert sizes["aide.verbose.log"] == 123_457
    assert sizes["model_fold0.pt"] == 50_000


def test_big_archive_is_streamed(tmp_path: Path) -> None:
    """A ~24 MB archive is written without holding its files in memory."""
    import tracemalloc

    spec = big_archive_spec(24 * 1024 * 1024, steps=10)
    tracemalloc.start()
    try:
        path = write_archive(spec, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    assert 16 * 1024 * 1024 < size < 36 * 1024 * 1024
    assert peak < 24 * 1024 * 1024


def test_archive_reads_back_with_plain_gzip(tmp_path: Path) -> None:
    path = write_archive(generate_run_group(0, steps=4), tmp_path)
    with gzip.open(path) as gz:
        data = gz.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames()
