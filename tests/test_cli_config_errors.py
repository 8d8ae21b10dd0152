"""Every configuration error is one line on stderr and exit status 2, whatever its source.

Exit 1 tells cron, Kubernetes and CI "some archives failed, the next run retries
them"; a configuration error must say 2 ("fix it; retrying will not help") and
what to fix, in one line, without a traceback and without a secret. The errors
are made for real: the CLI runs in a subprocess with AWS_CONFIG_FILE,
AWS_SHARED_CREDENTIALS_FILE and HOME pointing into tmp_path, against the loopback
S3 server of tests/conftest.py.
"""

from __future__ import annotations

import hashlib
import http.server
import inspect
import json
import os
import string
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions as bce
import pytest

from job.core.errors import UsageError
from job.demo.locals3 import SECRET_KEY
from job.download.awserrors import explain_config_error

#: botocore exception classes that are *not* configuration errors, and why. Every
#: other class must be mapped; a botocore upgrade that adds one fails the test below
#: until somebody decides which it is.
NOT_CONFIGURATION = {
    "BotoCoreError": "the base class: only its subclasses say what happened",
    "ApiVersionNotFoundError": "botocore's own data files: a broken install, not the user's setup",
    "DataNotFoundError": "botocore's own data files",
    "UnknownServiceError": "botocore's own data files (every service the session needs ships)",
    "AwsChunkedWrapperError": "an upload-body problem; the job only reads",
    "CapacityNotAvailableError": "client-side retry quota: transient",
    "ChecksumError": "a corrupt response body: the archive fails, retried next run",
    "FlexibleChecksumError": "a corrupt response body",
    "IncompleteReadError": "a short body: retried",
    "ConnectionError": "network trouble: retried (the listing reports it as unreachable)",
    "ConnectionClosedError": "network trouble: retried",
    "HTTPClientError": "network trouble: retried",
    "ReadTimeoutError": "network trouble: retried",
    "ResponseStreamingError": "network trouble: retried",
    "InvalidExpressionError": "a programming error (JMESPath in our code)",
    "MissingParametersError": "a programming error (a call without its parameters)",
    "ValidationError": "a programming error (parameter types in our calls)",
    "AliasConflictParameterError": "a programming error",
    "RangeError": "a programming error",
    "UnknownKeyError": "a programming error",
    "UnknownParameterError": "a programming error",
    "UnknownClientMethodError": "a programming error",
    "OperationNotPageableError": "a programming error",
    "PaginationError": "a programming error",
    "UnseekableStreamError": "a programming error (uploads)",
    "UnknownServiceStyle": "a programming error (service models)",
    "UnsupportedServiceProtocolsError": "botocore's own service models",
    "UnsupportedS3ControlArnError": "S3 Control, which the job never calls",
    "UnsupportedS3ControlConfigurationError": "S3 Control, which the job never calls",
    "InvalidHostLabelError": "endpoint rules fed by our own parameters",
    "ServiceNotInRegionError": "other services; S3 is in every region",
    "MD5UnavailableError": "a Python build without MD5: not a setting",
    "StubResponseError": "botocore's test stubber",
    "StubAssertionError": "botocore's test stubber",
    "UnStubbedResponseError": "botocore's test stubber",
    "WaiterConfigError": "waiters, which the job never uses",
    "WaiterError": "waiters, which the job never uses",
}


def _botocore_error_classes() -> list[type[bce.BotoCoreError]]:
    return sorted(
        (
            cls
            for _, cls in inspect.getmembers(bce, inspect.isclass)
            if issubclass(cls, bce.BotoCoreError) and cls.__module__ == bce.__name__
        ),
        key=lambda cls: cls.__name__,
    )


def _instance(cls: type[bce.BotoCoreError]) -> bce.BotoCoreError:
    """``cls`` with a plausible value for every field its message names."""
    fields = {name for _, name, _, _ in string.Formatter().parse(cls.fmt) if name}
    values = {name: f"<{name}>" for name in fields}
    values["error_msg"] = f"the process printed {SECRET_KEY}"
    params = inspect.signature(cls.__init__).parameters
    named = [p for p in params.values() if p.kind is p.POSITIONAL_OR_KEYWORD][1:]
    by_name = {p.name: values.get(p.name, f"<{p.name}>") for p in named}
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return cls(**by_name)  # a constructor of its own (e.g. WaiterError)
    return cls(**{**values, **{k: v for k, v in by_name.items() if k in fields}})


def test_the_list_of_non_configuration_errors_names_real_classes() -> None:
    names = {cls.__name__ for cls in _botocore_error_classes()}
    assert set(NOT_CONFIGURATION) <= names


@pytest.mark.parametrize(
    "cls",
    [c for c in _botocore_error_classes() if c.__name__ not in NOT_CONFIGURATION],
    ids=lambda c: c.__name__,
)
def test_every_botocore_configuration_error_is_mapped_to_one_line(
    cls: type[bce.BotoCoreError],
) -> None:
    from job.core.logs import register_secrets

    register_secrets([SECRET_KEY])
    explained = explain_config_error(_instance(cls))
    assert isinstance(explained, UsageError), f"{cls.__name__} is not mapped"
    message = str(explained)
    assert "\n" not in message
    assert SECRET_KEY not in message
    assert ":" in message  # what went wrong: what to do


@pytest.mark.parametrize("name", sorted(NOT_CONFIGURATION))
def test_other_botocore_errors_are_left_to_the_stages(name: str) -> None:
    assert explain_config_error(_instance(getattr(bce, name))) is None


# --- for real, in a subprocess --------------------------------------------------------


def _write(path: Path, text: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def _sso_cache(home: Path, cache_key: str) -> None:
    """An SSO token cache entry that expired in 2020, as `aws sso login` leaves it."""
    name = hashlib.sha1(cache_key.encode()).hexdigest()
    token = {
        "startUrl": "https://example.awsapps.com/start",
        "region": "us-east-1",
        "accessToken": "sso-access-token-that-must-not-show",
        "expiresAt": "2020-01-01T00:00:00Z",
    }
    _write(home / ".aws" / "sso" / "cache" / f"{name}.json", json.dumps(token))


SSO_LEGACY = """[profile p]
sso_start_url = https://example.awsapps.com/start
sso_region = us-east-1
sso_account_id = 111111111111
sso_role_name = reader
"""
SSO_SESSION = """[profile p]
sso_session = corp
sso_account_id = 111111111111
sso_role_name = reader
[sso-session corp]
sso_start_url = https://example.awsapps.com/start
sso_region = us-east-1
"""
NO_KEYS = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}


def _case(tmp: Path, name: str) -> tuple[list[str], dict[str, str | None], str]:
    """(extra flags, environment changes, what the one line must say) for case ``name``."""
    cfg = tmp / "aws"  # a config file of its own for each case
    home = tmp / "home"
    cases: dict[str, tuple[list[str], dict[str, str | None], str]] = {
        # the environment the CLI reads, checked as the flags are
        "retries-not-a-number": ([], {"ANALYZE_FAILURES_RETRIES": "abc"}, "ANALYZE_FAILURES_RETRIES"),
        "retries-zero": ([], {"ANALYZE_FAILURES_RETRIES": "0"}, "must be at least 1"),
        "log-format": ([], {"LOG_FORMAT": "bogus"}, "LOG_FORMAT='bogus'"),
        "log-level": ([], {"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud'"),
        "concurrent-zero": ([], {"CONCURRENT": "0"}, "CONCURRENT='0'"),
        "concurrent-word": ([], {"CONCURRENT": "many"}, "CONCURRENT='many'"),
        "processes-negative": ([], {"DOWNLOAD_PROCESSES": "-1"}, "DOWNLOAD_PROCESSES='-1'"),
        "processes-word": ([], {"DOWNLOAD_PROCESSES": "all"}, "DOWNLOAD_PROCESSES='all'"),
        "flag-processes": (["--download-processes", "5000"], {}, "must be at most 1024"),
        "shard-count": ([], {"SHARD_COUNT": "two"}, "SHARD_COUNT"),
        "shard-index": ([], {"SHARD_COUNT": "2", "SHARD_INDEX": "x"}, "SHARD_INDEX"),
        # flags
        "flag-retries": (["--retries", "0"], {}, "must be at least 1"),
        "flag-log-format": (["--log-format", "xml"], {}, "invalid choice"),
        "flag-bucket-path": (["--bucket-path", "http://x/y"], {}, "s3://BUCKET/PREFIX/"),
        # AWS profile and config files
        "missing-profile": ([], {"AWS_PROFILE": "nope", **NO_KEYS}, "AWS profile 'nope' not found"),
        "malformed-config": (
            [],
            {"AWS_CONFIG_FILE": _write(cfg / "malformed", "[default\nregion = x\n"), "AWS_PROFILE": "default"},
            "cannot parse the AWS config file",
        ),
        "credentials-not-utf8": (
            [],
            {
                "AWS_SHARED_CREDENTIALS_FILE": _write(
                    tmp / "aws" / "credentials", b"[default]\naws_access_key_id = \xff\xfe\n"
                ),
                **NO_KEYS,
            },
            "cannot parse the AWS config file",
        ),
        "credentials-unreadable": (
            [],
            {"AWS_SHARED_CREDENTIALS_FILE": str(_folder(tmp / "aws" / "credentials.d")), **NO_KEYS},
            "cannot be read",
        ),
        "partial-credentials": (
            [],
            {
                "AWS_CONFIG_FILE": _write(cfg / "partial", "[profile p]\naws_access_key_id = AKIAEXAMPLE\n"),
                "AWS_PROFILE": "p",
                **NO_KEYS,
            },
            "aws_secret_access_key is missing",
        ),
        "role-loop": (
            [],
            {
                "AWS_CONFIG_FILE": _write(
                    cfg / "loop", "[profile p]\nsource_profile = p\nrole_arn = arn:aws:iam::1:role/r\n"
                ),
                "AWS_PROFILE": "p",
                **NO_KEYS,
            },
            "invalid AWS profile configuration",
        ),
        "credential-process-fails": (
            [],
            {
                "AWS_CONFIG_FILE": _write(
                    cfg / "process",
                    f'[profile p]\ncredential_process = sh -c "echo {SECRET_KEY} >&2; exit 1"\n',
                ),
                "AWS_PROFILE": "p",
                **NO_KEYS,
            },
            "cannot get AWS credentials from custom-process",
        ),
        "sso-expired": (
            [],
            {"AWS_CONFIG_FILE": _write(cfg / "sso", SSO_LEGACY), "AWS_PROFILE": "p", "HOME": str(home), **NO_KEYS},
            "aws sso login",
        ),
        "sso-session-expired": (
            [],
            {"AWS_CONFIG_FILE": _write(cfg / "sso-session", SSO_SESSION), "AWS_PROFILE": "p", "HOME": str(home), **NO_KEYS},
            "aws sso login",
        ),
        "no-credentials": ([], NO_KEYS, "no AWS credentials found"),
        "rejected-credentials": ([], {"AWS_SECRET_ACCESS_KEY": "x" * 40}, "rejected the credentials"),
        "defaults-mode": ([], {"AWS_DEFAULTS_MODE": "bogus"}, "invalid AWS setting"),
        "checksum-setting": ([], {"AWS_REQUEST_CHECKSUM_CALCULATION": "sometimes"}, "invalid AWS setting"),
        # endpoint, bucket
        "endpoint-unreachable": (["--endpoint-url", "http://127.0.0.1:9"], {}, "cannot reach the S3 endpoint"),
        "endpoint-malformed": (["--endpoint-url", "not a url"], {}, "invalid S3 configuration"),
        "bucket-missing": (["--bucket-path", "s3://no-such-bucket/p/"], {}, "does not exist"),
        "bucket-name-invalid": (["--bucket-path", "s3://Bad_Name!/p/"], {}, "bucket name"),
        # the output dir
        "output-dir-under-a-file": (
            ["--output-dir", _write(tmp / "a-file", "x") + "/out"], {}, "cannot create output dir"
        ),
    }  # fmt: skip
    if name.startswith("sso"):
        _sso_cache(home, "https://example.awsapps.com/start" if name == "sso-expired" else "corp")
    return cases[name]


def _folder(path: Path) -> Path:
    """A folder where a file should be: unreadable as a file even for root (tests run as root)."""
    path.mkdir(parents=True, exist_ok=True)
    return path


CASES = [
    "retries-not-a-number", "retries-zero", "log-format", "log-level", "concurrent-zero",
    "concurrent-word", "processes-negative", "processes-word", "flag-processes", "shard-count", "shard-index", "flag-retries", "flag-log-format",
    "flag-bucket-path", "missing-profile", "malformed-config", "credentials-not-utf8",
    "credentials-unreadable", "partial-credentials", "role-loop", "credential-process-fails",
    "sso-expired", "sso-session-expired", "no-credentials", "rejected-credentials",
    "defaults-mode", "checksum-setting", "endpoint-unreachable", "endpoint-malformed",
    "bucket-missing", "bucket-name-invalid", "output-dir-under-a-file",
]  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_configuration_error_is_one_line_and_exit_two(
    name: str, bucket: str, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    flags, changes, expected = _case(tmp_path, name)
    env = {**os.environ, "ANALYZE_FAILURES_RETRIES": "1"}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    argv = [
        sys.executable, "-m", "job", "download",
        "--bucket-path", f"s3://{bucket}/failed_runs/",
        "--output-dir", str(tmp_path / "out"),
        *flags,
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if flags and name.startswith("flag-"):
        # argparse's own: the usage line, then one error line
        assert len(lines) <= 2, result.stderr
    else:
        assert len(lines) == 1, result.stderr
    assert expected in result.stderr
    for secret in (SECRET_KEY, "sso-access-token-that-must-not-show"):
        assert secret not in result.stderr + result.stdout


class _DenyingS3(http.server.BaseHTTPRequestHandler):
    """Answers every request as S3 does when the credentials may not list the bucket."""

    def do_GET(self) -> None:
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
            b"<Message>Access Denied</Message></Error>"
        )
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def denying_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DenyingS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_access_denied_is_one_line_and_exit_two(
    denying_endpoint: str, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    """Permissions: a real HTTP exchange with a loopback server that refuses as S3 does."""
    result = subprocess.run(
        [
            sys.executable, "-m", "job", "download",
            "--endpoint-url", denying_endpoint,
            "--bucket-path", "s3://bucket/failed_runs/",
            "--output-dir", str(tmp_path / "out"),
        ],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANALYZE_FAILURES_RETRIES": "1"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "access denied listing s3://bucket/failed_runs/" in result.stderr
    assert "permissions" in result.stderr
