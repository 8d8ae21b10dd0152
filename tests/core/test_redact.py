"""Credentials in URLs and key-shaped values never reach stdout, stderr or the output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from job.core.redact import REDACTED, redact_text

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example shape
TOKEN = "IQoJb3JpZ2luX2VjEJr" + "A1b2C3d4E5f6" * 12


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("endpoint http://alice:hunter2pass@s3.local:9000/x", "hunter2pass"),
        ("https://AKIDEXAMPLE:" + SECRET_KEY + "@host/", SECRET_KEY),
        ("key=" + SECRET_KEY + " end", SECRET_KEY),
        ("token " + TOKEN, TOKEN),
    ],
)
def test_shapes_are_redacted(text: str, gone: str) -> None:
    out = redact_text(text)
    assert gone not in out
    assert REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "d41d8cd98f00b204e9800998ecf8427e" + "abcdefab",  # a hex digest, 40 chars
        "failed_runs/aide/kaggle-x/2025-08-25T17-09-05-GMT_run-group_aide.tar.gz",
        "mailto-like user@example.org without a scheme",
        "http://s3.local:9000/bucket/key",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "job", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_a_usage_error_before_logging_does_not_echo_credentials(tmp_path: Path) -> None:
    proc = _cli(
        "download", "--concurrent", "http://bob:topsecretpw@h/", "--output-dir", str(tmp_path)
    )
    assert proc.returncode == 2
    assert "topsecretpw" not in proc.stderr + proc.stdout
    assert REDACTED in proc.stderr


def test_endpoint_credentials_stay_out_of_every_output(
    tmp_path: Path, bucket: str, s3_env: dict[str, str]
) -> None:
    """Debug level: botocore's own request logs included, and the output files."""
    port = s3_env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1].rstrip("/")
    endpoint = f"http://carol:Pa55wordInUrl@127.0.0.1:{port}"
    out = tmp_path / "out"
    proc = _cli(
        "run", "--bucket-path", f"s3://{bucket}/failed_runs/", "--output-dir", str(out),
        "--endpoint-url", endpoint, "--log-level", "debug",
        env=s3_env,
    )  # fmt: skip
    assert "Pa55wordInUrl" not in proc.stdout
    assert "Pa55wordInUrl" not in proc.stderr
    assert proc.stdout or proc.stderr  # it did say something
    for path in out.rglob("*") if out.exists() else []:
        if path.is_file():
            assert b"Pa55wordInUrl" not in path.read_bytes(), path
