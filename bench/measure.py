"""Run one command and measure it: wall time, CPU time, peak RSS of the process tree, exit status.

CPU time (``cpu_seconds``: user + system) is the tree's, from ``os.wait4``: every
descendant a process waited for is rolled into its parent's usage, so ``tar``
children, ``aws`` processes and parse workers all count. The loopback S3 server
is not in the tree and is not counted. On a machine with N cores, CPU / N is a
lower bound on the wall time of a contender that is bound by CPU.

Two memory numbers, because contenders differ in shape (one Python process with
threads vs. a shell fanning out to dozens of ``aws`` / ``tar`` processes):

* ``rss_max_mb`` -- the largest resident set of any *single* process in the tree,
  exact: ``os.wait4`` returns ``ru_maxrss`` of the child rolled up with every
  descendant it reaped (Linux keeps the max, not the sum).
* ``rss_sum_mb`` -- the largest *sum* of RSS over the live tree, sampled with
  psutil every 50 ms (so short-lived processes can be missed; it's a floor).
* ``pss_sum_mb`` -- the same sum of PSS (proportional set size: a page shared by
  N processes counts 1/N in each), so pages that forked workers share with their
  parent count once. RSS summed over a parent and its forked workers counts the
  parent's interpreter and libraries once per worker: 17 download workers of a
  55 MB parent "sum" to about 1 GB of RSS while using about a tenth of that.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

SAMPLE_SECONDS = 0.05


@dataclass
class Measurement:
    """One timed execution of one contender."""

    seconds: float
    exit_status: int
    rss_max_mb: float
    rss_sum_mb: float
    cpu_seconds: float = 0.0
    pss_sum_mb: float = 0.0
    ok: bool = True
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_sum = 0
        self.peak_single = 0
        self.peak_pss_sum = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop_event.is_set():
            total = pss = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for proc in procs:
                try:
                    memory = proc.memory_full_info()  # smaps_rollup: ~0.2 ms a process
                except psutil.Error:
                    continue
                total += memory.rss
                pss += getattr(memory, "pss", memory.rss)
                self.peak_single = max(self.peak_single, memory.rss)
            self.peak_sum = max(self.peak_sum, total)
            self.peak_pss_sum = max(self.peak_pss_sum, pss)
            self._stop_event.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
    timeout: float | None = None,
) -> Measurement:
    """Run ``argv`` to completion (or ``timeout``) and measure it; never raises on failure."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # so a timeout can end the whole tree, and only it
        )
    except OSError as exc:
        if log:
            out.close()  # type: ignore[union-attr]
        return Measurement(0.0, 127, 0.0, 0.0, ok=False, error=f"cannot start {argv[0]}: {exc}")
    sampler = _TreeSampler(proc.pid)
    sampler.start()
    timed_out = False
    timer: threading.Timer | None = None
    if timeout:

        def _kill() -> None:
            nonlocal timed_out
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)

        timer = threading.Timer(timeout, _kill)
        timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if timer:
        timer.cancel()
    sampler.stop()
    if log:
        out.close()  # type: ignore[union-attr]
    rss_max = max(usage.ru_maxrss * 1024, sampler.peak_single)  # ru_maxrss is KiB on Linux
    code = proc.returncode
    error = ""
    if timed_out:
        error = f"timed out after {timeout:.0f}s"
    elif code != 0:
        error = f"exit status {code}" + (f"; see {log}" if log else "")
    return Measurement(
        seconds=seconds,
        exit_status=code,
        rss_max_mb=rss_max / 2**20,
        rss_sum_mb=max(sampler.peak_sum, rss_max) / 2**20,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        pss_sum_mb=sampler.peak_pss_sum / 2**20,
        ok=code == 0 and not timed_out,
        error=error,
    )


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log, to say why a contender failed."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])
