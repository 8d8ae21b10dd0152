"""``python -m bench``: time the job against the old way, plain tools and the floor.

See bench/README.md for what every number means. Typical uses::

    .venv/bin/python -m bench                         # 40 archives x 8 MB, 3 rounds
    .venv/bin/python -m bench --smoke --json out.json # CI: tiny, one round, < 1 min
    .venv/bin/python -m bench --scaling               # 10/40/160 archives, 100/1k/5k steps
    .venv/bin/python -m bench --relist-keys 10000     # incremental re-run over many keys
    .venv/bin/python -m bench --archives 0 --relist-keys 10000   # only that
    .venv/bin/python -m bench --big-archive-gb 1      # add one ~1 GB archive
    .venv/bin/python -m bench --bwlimit 20M           # over a 20 MB/s link, not loopback
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.contenders import (
    CONTENDERS,
    DEFAULT_DOWNLOADERS,
    DOWNLOADERS,
    environment,
    runnable,
)
from bench.dataset import Dataset, Params, prepare
from bench.measure import run_measured
from bench.report import (
    contender_table,
    cpu_bounds,
    paired_ratios,
    ratio,
    ratio_lines,
    target_lines,
    targets_for,
)
from bench.runner import MB, Series, alternate, run_one
from job.core.config import usable_cpus
from job.demo.locals3 import LocalS3

#: The bench's buckets never change while served, so rclone may cache its listings
#: (with none it rescans a folder on every GET; see LocalS3).
STATIC_BUCKET = "24h"

HERE = Path(__file__).resolve().parent


def _say(text: str = "") -> None:
    print(text, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--archives",
        type=int,
        default=40,
        help="archives in the bucket (default 40; 0 skips the main table, e.g. to run "
        "only --relist-keys)",
    )
    p.add_argument("--steps", type=int, default=120, help="steps per AIDE journal (default 120)")
    p.add_argument(
        "--size-mb", type=float, default=8.0, help="extracted MB per archive (default 8)"
    )
    p.add_argument(
        "--runs-per-group", type=int, default=2, help="runs (journals) per archive (default 2)"
    )
    p.add_argument(
        "--agents", default="aide", help="comma list of agents, round-robin (default aide)"
    )
    p.add_argument("--repeats", type=int, default=3, help="rounds of every contender (default 3)")
    p.add_argument(
        "--contenders",
        default=None,
        help=f"comma list from {','.join(DOWNLOADERS)} (default: {','.join(DEFAULT_DOWNLOADERS)}; pipe_igzip "
        "only where igzip is installed)",
    )
    p.add_argument(
        "--no-floor", action="store_true", help="skip the in-memory decompress+extract floor"
    )
    p.add_argument(
        "--no-parse", action="store_true", help="skip analyze-failures parse vs the baseline parser"
    )
    p.add_argument(
        "--big-archive-gb",
        type=float,
        default=0.0,
        help="also time one archive of this size on the wire",
    )
    p.add_argument(
        "--scaling",
        action="store_true",
        help="10/40/160 archives and 100/1,000/5,000-step journals",
    )
    p.add_argument("--scaling-repeats", type=int, default=1)
    p.add_argument(
        "--relist-keys",
        type=int,
        default=0,
        metavar="N",
        help="time a no-op re-run over N tiny keys",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, one round: finishes in well under a minute",
    )
    p.add_argument(
        "--bwlimit",
        default=None,
        metavar="RATE",
        help="serve the compared buckets at most this fast (rclone --bwlimit, e.g. 40M "
        "bytes/s): a network link instead of loopback",
    )
    p.add_argument(
        "--cpus",
        type=_cpu_list,
        default=None,
        metavar="N[,N...]",
        help="run the whole bench once per N under taskset on the first N usable CPUs "
        "(every contender, the job's defaults and -P$(nproc) follow), then print the "
        "scaling curve, e.g. --cpus 1,2",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--timeout", type=float, default=3600, help="seconds before a contender run is killed"
    )
    p.add_argument("--json", type=Path, default=None, help="write every number here")
    p.add_argument("--work-dir", type=Path, default=HERE / "results" / "work")
    p.add_argument("--cache-dir", type=Path, default=HERE / "results" / "cache")
    p.add_argument(
        "--workers", type=int, default=2, help="processes generating datasets (default 2)"
    )
    return p


def warm_bytecode() -> None:
    """Compile the job and its dependencies to bytecode once, as the image does at build time.

    With PYTHONDONTWRITEBYTECODE set (it is, on this machine and in the image)
    Python never caches what it compiles, so without this every timed start of
    the job would recompile its own modules and half its dependencies: ~0.5 s
    of a ~1 s run that no installed deployment pays.
    """
    import compileall
    import sysconfig

    for where in (Path(sysconfig.get_paths()["purelib"]), HERE.parent / "job"):
        compileall.compile_dir(where, quiet=2, workers=0)


def _cpu_list(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1 or max(counts) > usable_cpus():
        raise argparse.ArgumentTypeError(f"CPU counts must be within 1..{usable_cpus()}: {text!r}")
    return counts


def _without_cpus(argv: Sequence[str]) -> list[str]:
    """The command line minus ``--cpus`` and ``--json`` (each child gets its own JSON)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--cpus", "--json"):
            skip = True
        elif not arg.startswith(("--cpus=", "--json=")):
            out.append(arg)
    return out


def cpu_scaling(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The same bench under ``taskset`` on 1, 2, ... CPUs: how each contender scales with cores.

    Each count runs in a child bench pinned to the first N CPUs of this one's mask, so
    ``usable_cpus()`` there (the job's defaults, the pipelines' ``-P``, the floor's
    processes) and everything it starts, the loopback S3 server included, see N.
    """
    cpus = sorted(os.sched_getaffinity(0))
    runs: dict[int, dict[str, Any]] = {}
    # Not under --work-dir: each child bench removes that when it finishes.
    scratch = Path(tempfile.mkdtemp(prefix="bench-cpus-"))
    for n in args.cpus:
        out = scratch / f"cpus-{n}.json"
        mask = ",".join(str(c) for c in cpus[:n])
        _say(f"\n==== on {n} CPU(s) (taskset -c {mask})")
        child = [sys.executable, "-m", "bench", *_without_cpus(argv), "--json", str(out)]
        code = subprocess.run(["taskset", "-c", mask, *child], check=False).returncode
        if code != 0:
            _say(f"bench on {n} CPU(s) failed (exit {code})")
            return code
        runs[n] = json.loads(out.read_text())
    shutil.rmtree(scratch, ignore_errors=True)
    _say("\n== scaling with CPUs: median s / CPU s / cores busy (CPU s / median s)")
    names = sorted(
        {k for r in runs.values() for k in {**r.get("contenders", {}), **r.get("parse", {})}}
    )
    _say(f"{'contender':<10} " + " ".join(f"{f'{n} CPU(s)':>22}" for n in runs))
    for name in names:
        cells = []
        for r in runs.values():
            side = {**r.get("contenders", {}), **r.get("parse", {})}.get(name)
            med = side and side.get("median_s")
            cpu = side and side.get("cpu_median_s")
            busy = cpu / med if med and cpu else None
            cells.append(
                f"{_fmt(med, '{:.2f}'):>7} {_fmt(cpu, '{:.2f}'):>7} {_fmt(busy, '{:.2f}'):>6}"
            )
        _say(f"{name:<10} " + " ".join(f"{c:>22}" for c in cells))
    if args.json:
        args.json.write_text(json.dumps({"cpu_scaling": runs}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.cpus:
        return cpu_scaling(args, argv)
    warm_bytecode()
    if args.smoke:
        args.archives, args.steps, args.size_mb, args.runs_per_group = 3, 8, 0.25, 1
        args.repeats, args.agents, args.timeout = 1, "aide,biomni", 120.0
    asked = args.contenders
    contenders = [
        c.strip() for c in (asked or ",".join(DEFAULT_DOWNLOADERS)).split(",") if c.strip()
    ]
    unknown = [c for c in contenders if c not in DOWNLOADERS]
    if unknown:
        _say(f"unknown contender(s) {unknown}; choose from {DOWNLOADERS}")
        return 2
    try:
        contenders, left_out = runnable(
            contenders, explicit=asked is not None, path=environment({})["PATH"]
        )
    except LookupError as exc:
        _say(str(exc))
        return 2
    for line in left_out:
        _say(line)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "usable_cpus": usable_cpus(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    params = Params(
        archives=args.archives,
        steps=args.steps,
        size_mb=args.size_mb,
        runs_per_group=args.runs_per_group,
        agents=tuple(a.strip() for a in args.agents.split(",")),
        seed=args.seed,
    )
    if args.archives > 0:
        data = prepare(args.cache_dir, params, workers=args.workers, log=_say)
        report.update(compare(args, data, contenders))
    if args.big_archive_gb > 0:
        big = prepare(
            args.cache_dir,
            Params(
                archives=0,
                steps=args.steps,
                size_mb=None,
                runs_per_group=2,
                seed=args.seed,
                big_archive_gb=args.big_archive_gb,
            ),
            workers=args.workers,
            log=_say,
        )
        _say(f"\n== one big archive: {big.describe()}")
        report["big_archive"] = compare(args, big, contenders, repeats=1, parse=False)
    if args.scaling:
        report["scaling"] = scaling(args, contenders)
    if args.relist_keys:
        report["relist"] = relist(args, args.relist_keys)
    report["elapsed_s"] = time.time() - started
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        _say(f"\nwrote {args.json}")
    shutil.rmtree(args.work_dir, ignore_errors=True)
    return 0


def compare(
    args: argparse.Namespace,
    data: Dataset,
    contenders: list[str],
    *,
    repeats: int | None = None,
    parse: bool = True,
) -> dict[str, Any]:
    """The main table: every downloader (and the floor) alternating, then parse vs baseline."""
    repeats = repeats or args.repeats
    names = [*contenders, *([] if args.no_floor else ["floor"])]
    work = args.work_dir / f"cmp-{data.params.key()}"
    work.mkdir(parents=True, exist_ok=True)
    _say(f"\n== dataset: {data.describe()}")
    _say(f"   {len(names)} contenders x {repeats} rounds, alternating: {' '.join(names)}")
    if args.bwlimit:
        _say(f"   served at most {args.bwlimit}B/s (rclone --bwlimit)")
    with LocalS3(
        data.root,
        log_file=work / "rclone.log",
        dir_cache_time=STATIC_BUCKET,
        bwlimit=args.bwlimit,
    ) as server:
        env = environment(server.env)
        results, kept = alternate(
            names,
            data,
            server.endpoint_url,
            work,
            env,
            repeats=repeats,
            keep_last=("download", "pipeline", "floor") if parse and not args.no_parse else (),
            timeout=args.timeout,
            say=_say,
        )
    parsed: dict[str, Series] = {}
    source = kept.get("download") or kept.get("pipeline") or kept.get("floor")
    if parse and not args.no_parse and source is not None and data.journals:
        _say(
            f"\n   parse vs baseline on {data.journals} journals ({data.journal_bytes / MB:.1f} MB) from {source.name}"
        )
        parsed, _ = alternate(
            ["parse", "old_parse"],
            data,
            "",
            work,
            environment({}),
            repeats=repeats,
            source=source,
            timeout=args.timeout,
            say=_say,
        )
    for path in kept.values():
        shutil.rmtree(path, ignore_errors=True)

    _say("")
    _say(contender_table(list(results.values()), data.extracted_bytes))
    if parsed:
        _say("")
        _say(contender_table(list(parsed.values()), data.journal_bytes, "MB/s jrnl"))
    lines, ratios = ratio_lines(results, parsed)
    _say("\nratios of medians (lower is faster for the first name):")
    for line in lines:
        _say(line)
    lines, spread = paired_ratios(results, parsed)
    _say("ratios per round (contenders timed back to back; the spread is the machine's):")
    for line in lines:
        _say(line)
    lines, bounds = cpu_bounds(results, parsed)
    _say(
        f"best ratios the job's CPU allows on {usable_cpus()} cores (its CPU s / cores, per round):"
    )
    for line in lines:
        _say(line)
    lines, targets = target_lines(ratios, results, parsed)
    size, _ = targets_for(usable_cpus())
    _say(
        f"targets (issue #18, for {size} cores, judged on {usable_cpus()} usable CPUs;"
        " on the ratios of medians):"
    )
    for line in lines:
        _say(line)
    return {
        "dataset": data.to_json(),
        "contenders": {n: s.to_json(data.extracted_bytes) for n, s in results.items()},
        "parse": {n: s.to_json(data.journal_bytes) for n, s in parsed.items()},
        "ratios": ratios,
        "paired_ratios": spread,
        "cpu_bounds": bounds,
        "targets": targets,
    }


def scaling(args: argparse.Namespace, contenders: list[str]) -> list[dict[str, Any]]:
    """Time per archive as the bucket grows, and per step as journals grow."""
    scenarios = [
        Params(
            archives=n,
            steps=args.steps,
            size_mb=args.size_mb,
            runs_per_group=args.runs_per_group,
            seed=args.seed,
        )
        for n in (10, 40, 160)
    ] + [
        Params(
            archives=10,
            steps=s,
            size_mb=None,
            runs_per_group=1,
            seed=args.seed,
            verbose_log_bytes=256 * 1024,
        )
        for s in (100, 1000, 5000)
    ]
    if args.smoke:
        scenarios = [
            replace(p, archives=min(p.archives, 3), steps=min(p.steps, 20))
            for p in scenarios[:1] + scenarios[3:4]
        ]
    rows = []
    for params in scenarios:
        data = prepare(args.cache_dir, params, workers=args.workers, log=_say)
        result = compare(args, data, contenders, repeats=args.scaling_repeats)
        per = {}
        for name, s in result["contenders"].items():
            med = s["median_s"]
            per[name] = {
                "median_s": med,
                "s_per_archive": med / data.archives if med and data.archives else None,
                "ms_per_step": 1000 * med / data.steps if med and data.steps else None,
            }
        for name, s in result["parse"].items():
            med = s["median_s"]
            per[name] = {
                "median_s": med,
                "ms_per_step": 1000 * med / data.steps if med and data.steps else None,
            }
        rows.append({"dataset": result["dataset"], "per": per, "ratios": result["ratios"]})
    _say("\n== scaling: time per archive (s) and per journal step (ms)")
    names = sorted({n for row in rows for n in row["per"]})
    head = f"{'archives':>8} {'steps/jrnl':>10} " + " ".join(
        f"{n + ' s/arch':>16} {n + ' ms/step':>17}" for n in names
    )
    _say(head)
    for row in rows:
        d = row["dataset"]
        cells = []
        for n in names:
            p = row["per"].get(n, {})
            cells.append(
                f"{_fmt(p.get('s_per_archive'), '{:.3f}'):>16} {_fmt(p.get('ms_per_step'), '{:.3f}'):>17}"
            )
        _say(f"{d['archives']:>8} {d['params']['steps']:>10} " + " ".join(cells))
    return rows


def relist(args: argparse.Namespace, keys: int) -> dict[str, Any]:
    """Seed ``keys`` tiny archives, download once, then time a second run that has nothing to do."""
    params = Params(
        archives=keys,
        steps=1,
        size_mb=None,
        runs_per_group=1,
        agents=("biomni", "stella", "mlagentbench"),
        seed=args.seed,
        verbose_log_bytes=1500,
    )
    data = prepare(args.cache_dir, params, workers=args.workers, log=_say)
    work = args.work_dir / f"relist-{params.key()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _say(f"\n== relist: {data.describe()}")
    out: dict[str, Any] = {"dataset": data.to_json()}
    with LocalS3(data.root, log_file=work / "rclone.log", dir_cache_time=STATIC_BUCKET) as server:
        env = environment(server.env)
        listing = run_measured(
            ["s5cmd", "--endpoint-url", server.endpoint_url, "ls", f"{data.bucket_path}*"],
            env=env,
            log=work / "s5cmd-ls.log",
            timeout=args.timeout,
        )
        out["s5cmd_ls"] = listing.to_json()
        _say(
            f"  s5cmd ls (listing floor)     {listing.seconds:8.2f}s  {'ok' if listing.ok else listing.error}"
        )
        first, folder = run_one(
            CONTENDERS["download"],
            data,
            server.endpoint_url,
            work,
            "relist",
            env,
            keep=True,
            timeout=args.timeout,
        )
        out["first_run"] = first.to_json()
        _say(
            f"  first download (all new)     {first.seconds:8.2f}s  max RSS {first.rss_max_mb:.0f} MB  {'ok' if first.ok else first.error}"
        )
        second = run_measured(
            CONTENDERS["download"].argv(data, server.endpoint_url, folder, None),
            env=env,
            log=work / "relist-again.log",
            timeout=args.timeout,
        )
        out["second_run"] = second.to_json()
        _say(
            f"  second download (nothing new) {second.seconds:7.2f}s  max RSS {second.rss_max_mb:.0f} MB  {'ok' if second.ok else second.error}"
        )
        out["second/listing"] = ratio(
            second.seconds if second.ok else None, listing.seconds if listing.ok else None
        )
    shutil.rmtree(work, ignore_errors=True)
    return out


def _fmt(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


if __name__ == "__main__":
    sys.exit(main())
