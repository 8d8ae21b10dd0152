"""The contenders: what each one runs, and how its output is checked.

* ``old``      -- the way it was done before the job: list with ``aws s3 ls``,
  then per archive ``aws s3 cp`` + ``tar -xzf``, five archives at a time (xargs -P5).
* ``pipeline`` -- the plain-tools pipeline of issue #6: one ``s5cmd cp 's3://b/p/*'``,
  then ``tar -xzf`` one per usable CPU at a time (xargs -P$(nproc), as
  ``job.core.config.usable_cpus`` counts them: affinity mask and cgroup quota).
* ``pipe_igzip`` -- the same with ISA-L's ``igzip`` as tar's decompressor, the
  fastest gunzip a shell user can reach for (Debian/Ubuntu: ``apt-get install
  isal``). Streaming each object (``s5cmd cat | tar``) instead was slower in a quick test:
  one s5cmd start per archive costs more than the one temporary file.
* ``download`` -- ``analyze-failures download`` (list, fetch, extract safely, manifest).
* ``run``      -- ``analyze-failures run`` (download, then parse the journals).
* ``floor``    -- decompress + extract from memory, no network (bench/floor.py).
* ``parse`` / ``old_parse`` -- ``analyze-failures parse`` vs bench/baseline_parse.py
  on the same extracted tree (for journal MB/s).

Every contender starts from an empty output folder and must leave at least the
archives' extracted bytes in it; one that exits non-zero or leaves less is
reported as failed (with the tail of its log), never crashes the bench.

The shell contenders move each archive into ``<output>/.spent/`` (named by
its shell's pid, so none overwrites another) once it is extracted, where a
user's script would ``rm`` it: a deletion makes every file the *next* contender
creates in the following minute slower (ext4 walks past recently freed inodes,
``recently_deleted``; 10-13% of ``download``'s CPU when it ran right after the
pipeline's ``rm``s). A rename costs the shell contender no more than the unlink
it replaces (with the ``discard`` mount option, less).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.dataset import BUCKET, Dataset
from job.core.config import usable_cpus

VENV_BIN = Path(sys.executable).parent

_OLD = r"""
set -euo pipefail
url="$1"; src="$2"; out="$3"; bucket="$4"
mkdir -p "$out/.spent"
aws s3 ls --recursive "$src" --endpoint-url "$url" \
  | awk '{print $4}' | grep '\.tar\.gz$' \
  | xargs -P5 -I{} sh -c '
      f="$2/$(basename "$1")"
      aws s3 cp "s3://$3/$1" "$f" --endpoint-url "$4" --only-show-errors
      tar -xzf "$f" -C "$2"
      mv "$f" "$2/.spent/$$.tar.gz"' _ {} "$out" "$bucket" "$url"
"""

# "$4" is how tar decompresses: -z (gzip) or --use-compress-program=igzip; "$5" the usable CPUs.
_PIPELINE = r"""
set -euo pipefail
url="$1"; src="$2"; out="$3"; gunzip="$4"; cpus="$5"
mkdir -p "$out/.spent"
s5cmd --endpoint-url "$url" cp "${src}*" "$out/" > /dev/null
find "$out" -path "$out/.spent" -prune -o -name '*.tar.gz' -print0 \
  | xargs -0 -P"$cpus" -I{} sh -c 'tar "$3" -xf "$1" -C "$(dirname "$1")" && mv "$1" "$2/.spent/$$.tar.gz"' _ {} "$out" "$gunzip"
"""


@dataclass(frozen=True)
class Contender:
    name: str
    argv: Callable[[Dataset, str, Path, Path | None], list[str]]  # (data, url, out, input)
    expect_bytes: Callable[[Dataset], int]
    single_process: bool
    what: str
    #: Programs it needs beyond the venv's, and how to get them, e.g. ("igzip", "apt-get install isal").
    needs: tuple[str, str] | None = None

    def missing(self, path: str) -> str | None:
        """Why it cannot run with this ``PATH`` (one line), or None when it can."""
        if self.needs is None or shutil.which(self.needs[0], path=path):
            return None
        return f"{self.needs[0]} is not installed ({self.needs[1]})"


def _cpus() -> str:
    """What ``nproc`` should mean for the shell contenders and the floor: the job's own count."""
    return str(usable_cpus())


def _job(*args: str) -> list[str]:
    return [str(VENV_BIN / "analyze-failures"), *args]


def _old(d: Dataset, url: str, out: Path, _: Path | None) -> list[str]:
    return ["bash", "-c", _OLD, "old", url, d.bucket_path, str(out), BUCKET]


def _pipeline(d: Dataset, url: str, out: Path, _: Path | None) -> list[str]:
    return ["bash", "-c", _PIPELINE, "pipeline", url, d.bucket_path, str(out), "-z", _cpus()]


def _pipe_igzip(d: Dataset, url: str, out: Path, _: Path | None) -> list[str]:
    gunzip = "--use-compress-program=igzip"
    return ["bash", "-c", _PIPELINE, "pipe_igzip", url, d.bucket_path, str(out), gunzip, _cpus()]


def _fetching(command: str, *extra: str) -> Callable[[Dataset, str, Path, Path | None], list[str]]:
    """``analyze-failures download`` or ``run`` against the served bucket (the same flags)."""

    def argv(d: Dataset, url: str, out: Path, _: Path | None) -> list[str]:
        return _job(
            command,
            *("--bucket-path", d.bucket_path, "--endpoint-url", url),
            *("--output-dir", str(out), "--no-progress", *extra),
        )

    return argv


def _design(name: str) -> Callable[[Dataset, str, Path, Path | None], list[str]]:
    """One of ``bench/designs.py``'s prototypes of another download design."""

    def argv(d: Dataset, url: str, out: Path, _: Path | None) -> list[str]:
        return [sys.executable, "-m", "bench.designs", name, url, d.bucket_path, str(out), _cpus()]

    return argv


def _floor(d: Dataset, url: str, out: Path, _: Path | None) -> list[str]:
    return [sys.executable, "-m", "bench.floor", str(d.archive_dir), str(out), _cpus()]


def _parse(d: Dataset, url: str, out: Path, src: Path | None) -> list[str]:
    return _job("parse", "--failed-runs-dir", str(src), "--output-dir", str(out))


def _old_parse(d: Dataset, url: str, out: Path, src: Path | None) -> list[str]:
    return [sys.executable, "-m", "bench.baseline_parse", str(src), str(out)]


def _extracted(d: Dataset) -> int:
    return d.extracted_bytes


def _nothing(d: Dataset) -> int:
    return 1 if d.journals else 0


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender(
            "old",
            _old,
            _extracted,
            False,
            "aws s3 ls; per archive aws s3 cp + tar -xzf, 5 at a time",
        ),
        Contender(
            "pipeline", _pipeline, _extracted, False, "s5cmd cp 's3://b/p/*'; tar -xzf 2 at a time"
        ),
        Contender(
            "pipe_igzip",
            _pipe_igzip,
            _extracted,
            False,
            "s5cmd cp 's3://b/p/*'; tar with igzip (ISA-L) 2 at a time",
            needs=("igzip", "Debian/Ubuntu: apt-get install isal"),
        ),
        Contender("download", _fetching("download"), _extracted, True, "analyze-failures download"),
        Contender(
            "download_threads",
            _fetching("download", "--download-processes", "0"),
            _extracted,
            True,
            "analyze-failures download --download-processes 0 (threads of one process)",
        ),
        Contender(
            "alt_extract_pool",
            _design("extract_pool"),
            _extracted,
            False,
            "prototype: GETs in threads, bodies piped to an extraction process pool",
        ),
        Contender(
            "alt_per_archive",
            _design("per_archive"),
            _extracted,
            False,
            "prototype: one forked process per archive (CPUs + 1 at a time)",
        ),
        Contender(
            "run", _fetching("run"), _extracted, True, "analyze-failures run (download + parse)"
        ),
        Contender(
            "floor",
            _floor,
            _extracted,
            False,
            "isal decompress + tarfile extract from memory, one process per usable CPU",
        ),
        Contender("parse", _parse, _nothing, True, "analyze-failures parse"),
        Contender(
            "old_parse",
            _old_parse,
            _nothing,
            True,
            "json.load + format, single-threaded (bench/baseline_parse.py)",
        ),
    )
}

#: What a plain ``python -m bench`` runs.
DEFAULT_DOWNLOADERS = ("old", "pipeline", "pipe_igzip", "download", "run")
#: Every contender ``--contenders`` accepts: the defaults and the other designs (issue #18).
DOWNLOADERS = (*DEFAULT_DOWNLOADERS, "download_threads", "alt_extract_pool", "alt_per_archive")


def runnable(names: list[str], *, explicit: bool, path: str) -> tuple[list[str], list[str]]:
    """The contenders that can run with this ``PATH``, and a line for each left out.

    A contender the user asked for by name must run, so its missing tool is an
    error (:class:`LookupError`, one line); from the default list it is only
    left out, with the line saying how to get it.
    """
    chosen, left_out = [], []
    for name in names:
        why = CONTENDERS[name].missing(path)
        if why is None:
            chosen.append(name)
        elif explicit:
            raise LookupError(f"contender {name} cannot run: {why}")
        else:
            left_out.append(f"{name} left out: {why}")
    return chosen, left_out


def environment(server_env: dict[str, str]) -> dict[str, str]:
    """The contenders' environment: the loopback server's keys and nothing of the host's AWS setup."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(server_env)
    env.update(
        {
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            "LOG_FORMAT": "json",
        }
    )
    return env
