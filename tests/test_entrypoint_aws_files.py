"""entrypoint.sh and AWS files uid 10001 cannot read (a host's ~/.aws mounted as is).

boto3 skips a credentials or config file it cannot open, so without the check a
0600 file owned by the host user surfaces later as "profile not found" or "no
credentials". The entrypoint stops first, with exit 2 and one line, but only
where the files are the credential source. Run as the image runs it (see
tests/test_container.py), with a stub instead of the job.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.test_container import (
    ENTRYPOINT,
    IMAGE_UID,
    base_env,
    can_switch_user,
    image_dir,
    run_entrypoint,
    stderr_lines,
    world_tmp,  # noqa: F401 (a fixture)
)

pytestmark = pytest.mark.skipif(
    not can_switch_user(), reason="needs root and setpriv to be uid 10001"
)
HOST_UID = 1000  # the owner of a typical ~/.aws, not the image's user


@pytest.fixture
def setup(world_tmp: Path) -> dict[str, Path]:  # noqa: F811 (the fixture above)
    home = image_dir(world_tmp, "home")
    out = image_dir(world_tmp, "data")
    aws = home / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text("[dev]\naws_access_key_id = a\naws_secret_access_key = b\n")
    (aws / "credentials").chmod(0o600)
    os.chown(aws / "credentials", HOST_UID, HOST_UID)
    stub = world_tmp / "stub"
    # A shell stub: uid 10001 must not need the capability tests/test_container.py
    # lends it to reach a private interpreter, since that capability reads any file.
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$1"\n')
    stub.chmod(0o755)
    # The script itself from a world-readable folder: a checkout may sit under a
    # private folder (a 0700 home, CI's mktemp -d) that uid 10001 cannot enter.
    script = world_tmp / "entrypoint.sh"
    shutil.copyfile(ENTRYPOINT, script)
    script.chmod(0o755)
    return {"home": home, "out": out, "aws": aws, "stub": stub, "script": script}


def call(setup: dict[str, Path], *args: str, **env: str):
    # base_env points AWS_CONFIG_FILE/AWS_SHARED_CREDENTIALS_FILE away from HOME;
    # here they must be the mounted ~/.aws, as in the container.
    full = base_env(
        setup["home"], OUTPUT_DIR=str(setup["out"]), ANALYZE_FAILURES_BIN=str(setup["stub"])
    )
    del full["AWS_CONFIG_FILE"], full["AWS_SHARED_CREDENTIALS_FILE"]
    full.update(env)
    user = ["setpriv", f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}", "--clear-groups"]
    return run_entrypoint(*args, env=full, cwd=setup["out"], user=user, script=setup["script"])


def test_a_profile_in_an_unreadable_credentials_file_is_one_line_and_exit_2(setup):
    result = call(setup, AWS_PROFILE="dev")
    assert result.returncode == 2
    assert result.stdout == "", "the job must not have started"
    (line,) = stderr_lines(result)
    credentials = setup["aws"] / "credentials"
    assert line.startswith(
        f"entrypoint: AWS file {credentials} is not readable by uid {IMAGE_UID}: run as its owner"
    )
    assert "ANALYZE_UID/ANALYZE_GID" in line
    assert "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in line


def test_no_credentials_at_all_means_the_file_is_the_source(setup):
    assert call(setup).returncode == 2


def test_an_unsearchable_aws_folder_is_named(setup):
    setup["aws"].chmod(0o700)
    os.chown(setup["aws"], HOST_UID, HOST_UID)
    result = call(setup, AWS_PROFILE="dev")
    assert result.returncode == 2
    (line,) = stderr_lines(result)
    assert line.startswith(f"entrypoint: AWS folder {setup['aws']} is not readable by uid 10001")


def test_a_credentials_file_elsewhere_is_checked_too(setup, world_tmp):  # noqa: F811
    elsewhere = world_tmp / "creds"
    elsewhere.write_text("[dev]\n")
    elsewhere.chmod(0o600)
    result = call(setup, AWS_PROFILE="dev", AWS_SHARED_CREDENTIALS_FILE=str(elsewhere))
    assert result.returncode == 2
    assert f"AWS file {elsewhere} is not readable" in result.stderr


@pytest.mark.parametrize(
    "env",
    [
        {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"},  # keys win over the file
        {"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token", "AWS_ROLE_ARN": "arn:x"},  # IRSA
        {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"},
        {"NO_SIGN_REQUEST": "true"},
    ],
    ids=["keys", "irsa", "pod-identity", "no-sign-request"],
)
def test_other_credential_sources_are_not_stopped_by_an_unreadable_file(setup, env):
    result = call(setup, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "run\n"


@pytest.mark.parametrize(
    "args", [("report",), ("merge",), ("download", "--help"), ("--no-sign-request",)]
)
def test_commands_that_read_no_bucket_or_sign_nothing_skip_the_check(setup, args):
    result = call(setup, *args, AWS_PROFILE="dev")
    assert result.returncode == 0, result.stderr


def test_a_readable_file_passes(setup):
    os.chown(setup["aws"] / "credentials", IMAGE_UID, IMAGE_UID)
    result = call(setup, AWS_PROFILE="dev")
    assert result.returncode == 0, result.stderr
