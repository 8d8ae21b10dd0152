"""``python -m bench.html_scale``: do the analysis pages stay usable at scale?

Two questions from issue #7, answered in Debian's Chromium (headless, pages
from disk, like a reader on a file share):

1. ``ROOT/index.html`` with 2,000 journals (plus runs of other agents): how
   long until it is drawn and interactive (target: under 2 s)?
2. A journal page of 5,000 steps: how long to render in Python (the parse
   worker pays this per journal), how long until the browser has drawn it,
   what is the longest main-thread task (a "freeze"), and how long does a click
   on the deepest tree node take to open its step?

Data is real output of the project's own generator (``job.demo.synthetic``) parsed by
the real parse stage; the 2,000 index entries are the parsed ones repeated
under other run-group names and dates (their journals are not re-read: the
entries carry the analysis fields, as after the lead's wiring). Generated data
is cached in ``bench/results/html_scale/`` (git-ignored); timing never includes
generation. Numbers are medians of ``--repeats`` loads, each in a fresh page.

Browser timings: ``ready`` is navigation start until the page's script has
run and two frames were drawn after it; ``fcp`` is first contentful paint;
``cpu`` is the renderer processes' CPU time for the load (less sensitive to a
busy machine than wall time); ``longest task`` comes from the Long Tasks API.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from job.core.config import ParseConfig
from job.demo.synthetic import generate_run_group, seed_bucket, write_archive
from job.model.extras import index_extras
from job.model.journal import load_journal
from job.model.layout import derive_layout
from job.parse.stage import run_parse
from job.report.journal_files import JOURNAL_FILES, page_header
from job.report.journal_page import render_journal_page
from job.report.site import build_site, read_entries

HERE = Path(__file__).resolve().parent
WORK = HERE / "results" / "html_scale"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LONG_TASKS = (
    "window.__lt=[];new PerformanceObserver(l=>{for(const e of l.getEntries())"
    "window.__lt.push(e.duration)}).observe({type:'longtask',buffered:true});"
)
TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
FCP = (
    "() => (performance.getEntriesByName('first-contentful-paint')[0] || {startTime: -1}).startTime"
)


def say(text: str = "") -> None:
    print(text, flush=True)


# --- data -----------------------------------------------------------------------------------


def base_root(groups: int, steps: int, workers: int) -> Path:
    """Generated run groups of every agent, extracted and parsed (cached)."""
    root = WORK / f"base-{groups}g-{steps}s"
    if (root / "aide_journals" / "index.json").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    bucket = root / "bucket"
    say(f"generating {groups} run groups ({steps} steps per journal)…")
    agents = ("aide", "aide", "aide", "biomni", "stella", "mlagentbench")
    archives = seed_bucket(
        bucket, n_archives=groups, agents=agents, seed=7, steps=steps, workers=workers
    )
    failed = root / "failed_runs"
    for archive in archives:
        with tarfile.open(archive) as tar:
            tar.extractall(failed / archive.name.removesuffix(".tar.gz"), filter="data")
    shutil.rmtree(bucket)
    run_parse(
        ParseConfig(failed_runs_dir=failed, output_dir=root / "aide_journals", concurrent=workers),
        JOURNAL_FILES,
    )
    return root


def scaled_root(base: Path, journals: int) -> Path:
    """``base`` with its index entries repeated to ``journals`` entries, analysis fields included."""
    root = WORK / f"index-{journals}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "aide_journals").mkdir(parents=True)
    os.symlink(base / "failed_runs", root / "failed_runs")  # the other agents' runs, read from logs
    entries = [e for e in read_entries(base / "aide_journals", say) if not e.get("error")]
    for e in entries:
        e.update(
            index_extras(load_journal(base / "failed_runs" / e["journal"]), report=e["report"])
        )
    scaled = []
    start = datetime(2025, 6, 1, 8, 0)
    for i in range(journals):
        e = dict(entries[i % len(entries)])
        when = start + timedelta(hours=7 * (i // 3))
        group = f"{when:%Y-%m-%dT%H-%M-%S}-GMT_run-group_aide"
        e["journal"] = f"copy{i}/{e['journal']}"
        e["run_group"] = group
        e["report"] = f"copy{i}/{e['report']}"
        e["html"] = f"copy{i}/{e['html']}"
        scaled.append(e)
    doc = {"schema_version": 1, "shard": None, "journals": scaled}
    (root / "aide_journals" / "index.json").write_text(json.dumps(doc))
    return root


def big_journal_path(steps: int) -> Path:
    """One generated AIDE journal of ``steps`` steps (cached)."""
    dest = WORK / f"journal-{steps}"
    found = sorted(dest.rglob("journal.json")) if dest.is_dir() else []
    if found:
        return found[0]
    shutil.rmtree(dest, ignore_errors=True)
    say(f"generating one {steps}-step journal…")
    spec = generate_run_group(7, n_runs=1, steps=steps)  # seed 11 needs >18 GB (reported)
    archive = write_archive(spec, dest / "archive")
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "x", filter="data")
    archive.unlink()
    return sorted(dest.rglob("journal.json"))[0]


# --- browser ---------------------------------------------------------------------------------


def renderer_cpu() -> float:
    """CPU seconds used so far by Chromium renderer processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
            if b"--type=renderer" not in cmd:
                continue
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / tick


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def load(
    browser: Any, url: str, after: Callable[[Any], dict[str, float]] | None = None
) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.add_init_script(LONG_TASKS)
    page.goto("about:blank")
    cpu0 = renderer_cpu()
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector("body[data-ready='1']", timeout=120_000)
    page.evaluate(TWO_FRAMES)
    ready = time.perf_counter() - started
    cpu = renderer_cpu() - cpu0
    result = {
        "ready_s": ready,
        "fcp_s": page.evaluate(FCP) / 1000,
        "cpu_s": cpu,
        "longest_task_ms": max(page.evaluate("window.__lt"), default=0.0),
    }
    if after is not None:
        result |= after(page)
    page.close()
    if errors:
        raise RuntimeError(f"{url}: errors in the page: {errors[:3]}")
    return result


def open_deepest_node(page: Any) -> dict[str, float]:
    """Scroll the tree to the last step's node, click it, wait for its step to be open."""
    last = page.evaluate(
        "JSON.parse(document.getElementById('steps-meta').textContent).steps.length - 1"
    )
    page.evaluate(
        """i => { const s = JSON.parse(document.getElementById('steps-meta').textContent).steps[i];
                  const b = document.getElementById('treebox'); b.scrollLeft = s.x - 300; b.scrollTop = s.y - 150; }""",
        last,
    )
    node = page.locator(f'#tree a[data-i="{last}"]')
    node.wait_for()
    started = time.perf_counter()
    node.click()
    page.wait_for_selector(f"#node-{last}[open] .body[data-done]")
    page.evaluate(TWO_FRAMES)
    return {
        "click_to_open_s": time.perf_counter() - started,
        "tree_nodes_drawn": page.locator("#tree-nodes a").count(),
        "step_summaries_drawn": page.locator("#steps details.step").count(),
    }


def median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.html_scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--journals", type=int, default=2000, help="index entries (default 2000)")
    ap.add_argument(
        "--steps", type=int, default=5000, help="steps of the big journal (default 5000)"
    )
    ap.add_argument(
        "--groups", type=int, default=60, help="generated run groups behind the index (default 60)"
    )
    ap.add_argument("--repeats", type=int, default=5, help="browser loads per page (default 5)")
    ap.add_argument("--workers", type=int, default=2, help="processes for generating/parsing")
    ap.add_argument(
        "--json", type=Path, default=WORK / "html_scale.json", help="where to write the numbers"
    )
    args = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)

    base = base_root(args.groups, 40, args.workers)
    root = scaled_root(base, args.journals)
    started = time.perf_counter()
    summary = build_site(root)
    site_s = time.perf_counter() - started
    index_bytes = (root / "index.html").stat().st_size

    journal_path = big_journal_path(args.steps)
    journal = load_journal(journal_path)
    header = page_header(
        derive_layout(journal_path.relative_to(journal_path.parents[5]).as_posix())
    )
    renders = []
    for _ in range(3):
        started = time.perf_counter()
        html = render_journal_page(journal, header=header, report_name="report.txt")
        renders.append(time.perf_counter() - started)
    page_path = WORK / "journal-page.html"
    page_path.write_text(html)

    with chromium() as browser:
        load(browser, (root / "index.html").as_uri())  # warm-up (browser start, fonts)
        index = median([load(browser, (root / "index.html").as_uri()) for _ in range(args.repeats)])
        big = median(
            [load(browser, page_path.as_uri(), open_deepest_node) for _ in range(args.repeats)]
        )

    result = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
        },
        "index": {
            "journals": summary.journals,
            "runs": summary.runs,
            "runs_without_journal": summary.runs_without_journal,
            "failures": summary.failures,
            "build_site_s": round(site_s, 3),
            "html_mb": round(index_bytes / 1e6, 2),
            **{k: round(v, 3) for k, v in index.items()},
        },
        "journal_page": {
            "steps": journal.step_count,
            "journal_mb": round(journal_path.stat().st_size / 1e6, 1),
            "render_s": round(statistics.median(renders), 3),
            "html_mb": round(len(html.encode()) / 1e6, 1),
            **{k: round(v, 3) for k, v in big.items()},
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    i, j = result["index"], result["journal_page"]
    say()
    say(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    say(
        f"index.html, {i['journals']:,} journals + {i['runs_without_journal']} other runs "
        f"({i['html_mb']} MB): build_site {i['build_site_s']} s; browser ready {i['ready_s']} s "
        f"(first paint {i['fcp_s']} s, renderer CPU {i['cpu_s']} s, longest task {i['longest_task_ms']:.0f} ms)"
    )
    say(
        f"journal page, {j['steps']:,} steps ({j['journal_mb']} MB journal, {j['html_mb']} MB page): "
        f"render_journal_page {j['render_s']} s; browser ready {j['ready_s']} s (first paint "
        f"{j['fcp_s']} s, renderer CPU {j['cpu_s']} s, longest task {j['longest_task_ms']:.0f} ms); "
        f"click on step {j['steps'] - 1}'s node -> step open {j['click_to_open_s']} s; "
        f"drawn: {j['tree_nodes_drawn']:.0f} tree nodes, {j['step_summaries_drawn']:.0f} step summaries"
    )
    say(f"numbers: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
