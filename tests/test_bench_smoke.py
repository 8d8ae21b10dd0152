"""The bench runs end to end in --smoke mode and reports every contender.

No timing assertions: this only guards the harness (generation, the loopback
server, alternation, measurement, the table and the JSON) against rot. A
contender that fails (e.g. a job subcommand not written yet) must be reported
in the table and the JSON, not crash the bench.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.contenders import environment

REPO = Path(__file__).resolve().parent.parent


def run_bench(tmp_path: Path, *args: str) -> tuple[str, dict[str, Any]]:
    """``python -m bench ARGS`` with scratch folders under ``tmp_path``: its table and JSON."""
    out = tmp_path / "bench.json"
    scratch = ("--work-dir", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--json", str(out), *scratch],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_bench_smoke(tmp_path: Path) -> None:
    # --bwlimit: the server must start with it; 100 MiB/s costs this data nothing.
    table, report = run_bench(tmp_path, "--smoke", "--bwlimit", "100M")
    # CI installs igzip (scripts/ensure-debian-package); elsewhere the bench says what is missing.
    igzip = ["pipe_igzip"] if shutil.which("igzip", path=environment({})["PATH"]) else []
    for name in ("old", "pipeline", *igzip, "download", "run", "floor", "parse", "old_parse"):
        assert any(line.startswith(f"{name} ") for line in table.splitlines()), (name, table)
    assert "ratios of medians" in table
    if not igzip:
        assert "pipe_igzip left out: igzip is not installed" in table

    assert set(report["contenders"]) == {"old", "pipeline", *igzip, "download", "run", "floor"}
    for name, series in report["contenders"].items():
        assert series["runs"], name
        for run in series["runs"]:
            assert {"seconds", "exit_status", "rss_max_mb", "rss_sum_mb", "ok", "error"} <= set(run)
            assert run["cpu_seconds"] > 0, (name, run)  # the tree's, children included
    # the plain-tools contenders need nothing from the job, so they must work
    for name in ("old", "pipeline", *igzip, "floor"):
        assert report["contenders"][name]["ok"], report["contenders"][name]["errors"]
        assert report["contenders"][name]["median_s"] > 0
    assert (report["ratios"]["download/pipe_igzip"] is not None) is bool(igzip)
    assert set(report["parse"]) <= {"parse", "old_parse"}
    assert report["dataset"]["archives"] == 3
    assert report["dataset"]["extracted_bytes"] > 0
    assert {"download/pipeline", "run/(download+parse)"} <= set(report["ratios"])
    assert "ratios per round" in table
    spread = report["paired_ratios"]["download/pipeline"]
    assert spread["rounds"] == 1
    assert spread["min"] == spread["median"] == spread["max"]
    assert spread["median"] == pytest.approx(
        report["contenders"]["download"]["median_s"] / report["contenders"]["pipeline"]["median_s"]
    )
    # The CPU bound: the job's CPU over this machine's cores, against the other's median.
    assert "CPU s" in table
    assert "best ratios the job's CPU allows" in table
    (download,) = report["contenders"]["download"]["runs"]
    (pipeline,) = report["contenders"]["pipeline"]["runs"]
    bound = report["cpu_bounds"]["download/pipeline"]
    assert bound["rounds"] == 1
    assert bound["median"] == pytest.approx(
        download["cpu_seconds"] / report["machine"]["usable_cpus"] / pipeline["seconds"]
    )
    # Every target of issue #18 for this machine's size, judged on what this run measured.
    cpus = report["machine"]["usable_cpus"]
    size = 16 if cpus >= 16 else 2
    assert f"targets (issue #18, for {size} cores, judged on {cpus} usable CPUs" in table
    targets = report["targets"]
    per_size = {"download/pipe_igzip", "run/download"} | (
        {"parse/old_parse"} if size == 16 else set()
    )
    assert set(targets) == per_size | {"peak_rss_mb", "peak_rss_sum_mb", "peak_pss_sum_mb"}
    limit = 1.0 if size == 16 else 0.9
    dl = targets["download/pipe_igzip"]
    assert (dl["limit"], dl["measured"]) == (limit, report["ratios"]["download/pipe_igzip"])
    assert dl["met"] is (None if dl["measured"] is None else dl["measured"] <= limit)
    run = targets["run/download"]
    assert run["measured"] == pytest.approx(
        report["contenders"]["run"]["median_s"] / report["contenders"]["download"]["median_s"]
    )
    assert run["met"] is (run["measured"] <= run["limit"])
    rss = targets["peak_rss_mb"]
    job_sides = [report["contenders"]["download"], report["contenders"]["run"]]
    job_sides += [report["parse"]["parse"]] if "parse" in report["parse"] else []
    assert rss["measured"] == max(side["rss_max_single_mb"] for side in job_sides)
    assert rss["met"] is (rss["measured"] < 200)
    summed = targets["peak_rss_sum_mb"]
    assert summed["measured"] == max(side["rss_sum_mb"] for side in job_sides)
    assert summed["met"] is (summed["measured"] < 1024)
    proportional = targets["peak_pss_sum_mb"]
    assert proportional["measured"] == max(side["pss_sum_mb"] for side in job_sides)
    # Shared pages count once: never more than the RSS sum, and the job's processes
    # really hold memory of their own.
    assert 0 < proportional["measured"] <= summed["measured"]
    verdict = "met" if run["met"] else "not met"
    assert re.search(
        rf"run <= {run['limit']:.1f}x download +{run['measured']:.2f}x  {verdict}$",
        table,
        re.M,
    )
    assert report["config"]["bwlimit"] == "100M"
    assert not (tmp_path / "work").exists()  # the bench cleans up after itself


def test_bench_relist_alone(tmp_path: Path) -> None:
    """``--archives 0`` skips the main table; the no-op re-run case still runs and reports."""
    table, report = run_bench(tmp_path, "--archives", "0", "--relist-keys", "20")
    assert "contenders" not in report
    relist = report["relist"]
    assert relist["dataset"]["archives"] == 20
    assert relist["first_run"]["ok"], relist["first_run"]
    assert relist["second_run"]["ok"], relist["second_run"]
    assert "second download (nothing new)" in table


def test_bench_cpus_pins_every_contender(tmp_path: Path) -> None:
    """--cpus 1: the child bench, the job and the pipelines all see one usable CPU."""
    table, report = run_bench(
        tmp_path, "--smoke", "--cpus", "1", "--contenders", "pipeline,download", "--no-parse"
    )
    (child,) = report["cpu_scaling"].values()
    assert child["machine"]["usable_cpus"] == 1
    assert set(child["contenders"]) == {"pipeline", "download", "floor"}
    assert "taskset -c" in table
    assert "scaling with CPUs" in table
    busy = {
        line.split()[0]: float(line.split()[3])
        for line in table.splitlines()
        if line.startswith(("pipeline ", "download ")) and len(line.split()) == 4
    }
    assert set(busy) == {"pipeline", "download"}
    # Pinned to one CPU, no contender can keep more than one core busy.
    assert all(value <= 1.05 for value in busy.values()), busy


def test_the_other_download_designs_run_and_leave_the_whole_tree(tmp_path: Path) -> None:
    """The opt-in contenders (issue #18's alternatives) pass the bench's own output check.

    The bench fails a contender that exits non-zero or leaves fewer than the
    archives' extracted bytes, so ``ok`` here means each prototype really
    received every archive.
    """
    names = ("download_threads", "alt_extract_pool", "alt_per_archive")
    _, report = run_bench(
        tmp_path, "--smoke", "--contenders", ",".join(names), "--no-floor", "--no-parse"
    )
    assert set(report["contenders"]) == set(names)
    for name in names:
        assert report["contenders"][name]["ok"], report["contenders"][name]["errors"]
