"""Turn botocore's configuration exceptions into one-line :class:`UsageError` messages.

A missing profile, a malformed ``~/.aws/config``, an expired SSO session or a bad
``AWS_*`` variable cannot be fixed by retrying, so the run must stop with exit 2
(cron, Kubernetes and CI read 1 as "some archives failed, try again"). botocore
raises these from many places (building the session, the client, resolving
credentials at the first request), so the mapping lives here once and every
place that talks to botocore uses it; the CLI applies it as a last resort too.

Messages are built from the exception's structured fields (a profile name, a
file path, a provider name), not from arbitrary text, and free text that has to
be shown (a credential process's stderr) is cut to one short line and passed
through the log redactor, so no secret reaches the terminal.
"""

from __future__ import annotations

import os

import botocore.exceptions as bce

from job.core.errors import UsageError
from job.core.logs import redactor

_FILES = "AWS_CONFIG_FILE (default ~/.aws/config) / AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials)"
_CREDS = "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --no-sign-request for a public bucket"


def _field(exc: bce.BotoCoreError, name: str, default: str = "?") -> str:
    """One structured field of a botocore exception, as one short, redacted line."""
    value = str(getattr(exc, "kwargs", {}).get(name, default) or default)
    line = " ".join(value.split())  # one line, whatever the source printed
    if len(line) > 160:
        line = line[:157] + "..."
    return str(redactor._scrub(line))


def unreadable_aws_file() -> str | None:
    """Which AWS config or credentials file exists but cannot be read, said in words.

    botocore skips a credentials or config file it cannot open as if it were
    absent, so a file with the wrong owner or mode (or a folder mounted where the
    file should be) shows up only as "no credentials"; this names the real cause.
    """
    for variable, default in (
        ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
        ("AWS_CONFIG_FILE", "~/.aws/config"),
    ):
        path = os.path.expanduser(os.path.expandvars(os.environ.get(variable) or default))
        if not os.path.lexists(path):
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            return f"{path} ({variable}) cannot be read: {exc.strerror}"
    return None


def _sso_fix() -> str:
    return "log in again with `aws sso login` (for the profile in AWS_PROFILE), then rerun"


def explain_config_error(exc: BaseException) -> UsageError | None:
    """The one-line usage error for a botocore configuration exception; None for others.

    The order matters: subclasses come before their bases.
    """
    if not isinstance(exc, bce.BotoCoreError):
        return None
    e = exc
    if isinstance(e, bce.ProfileNotFound):
        return UsageError(
            f"AWS profile {_field(e, 'profile')!r} not found: check AWS_PROFILE, "
            f"or add the profile to {_FILES}"
        )
    if isinstance(e, bce.ConfigParseError):
        return UsageError(
            f"cannot parse the AWS config file {_field(e, 'path')}: fix its syntax "
            "(INI sections like [profile NAME], UTF-8) or point AWS_CONFIG_FILE / "
            "AWS_SHARED_CREDENTIALS_FILE elsewhere"
        )
    if isinstance(e, bce.ConfigNotFound):
        return UsageError(
            f"the AWS config file {_field(e, 'path')} does not exist: fix AWS_CONFIG_FILE"
        )
    if isinstance(e, bce.PartialCredentialsError):
        return UsageError(
            f"incomplete AWS credentials in {_field(e, 'provider')}: "
            f"{_field(e, 'cred_var')} is missing; set it or remove the other half"
        )
    if isinstance(e, bce.NoCredentialsError):
        unreadable = unreadable_aws_file()
        if unreadable:
            return UsageError(
                f"no AWS credentials found, and {unreadable}: make it a readable file "
                f"(or point the variable elsewhere), or {_CREDS}"
            )
        return UsageError(f"no AWS credentials found: {_CREDS}")
    if isinstance(e, bce.UnauthorizedSSOTokenError | bce.SSOTokenLoadError | bce.SSOError):
        return UsageError(f"the AWS SSO session is missing or has expired: {_sso_fix()}")
    if isinstance(
        e, bce.TokenRetrievalError | bce.NoAuthTokenError | bce.UnknownTokenProviderError
    ):
        return UsageError(f"cannot get an AWS access token (expired SSO session?): {_sso_fix()}")
    if isinstance(e, bce.LoginError):
        return UsageError(
            "the AWS login session is missing or has expired: run `aws login` "
            "(for the profile in AWS_PROFILE), then rerun"
        )
    if isinstance(e, bce.InvalidConfigError):
        return UsageError(
            f"invalid AWS profile configuration ({_one_line(e)}): fix the profile in {_FILES}"
        )
    if isinstance(e, bce.UnknownCredentialError):
        return UsageError(
            f"unknown AWS credential source {_field(e, 'name')!r}: fix credential_source "
            "in the profile"
        )
    if isinstance(e, bce.CredentialRetrievalError):
        # Not its error_msg: for a credential_process that is the program's own
        # stderr, which may hold anything, secrets included.
        return UsageError(
            f"cannot get AWS credentials from {_field(e, 'provider')}: run that source "
            f"(e.g. the profile's credential_process) by hand to see why, or {_CREDS}"
        )
    if isinstance(e, bce.RefreshWithMFAUnsupportedError):
        return UsageError(
            "the AWS profile needs an MFA code to refresh its role credentials, which a "
            "batch job cannot type: use credentials without MFA (or an instance role)"
        )
    if isinstance(e, bce.MetadataRetrievalError):
        return UsageError(
            "cannot get credentials from the instance metadata service: attach a role to the "
            f"instance, or {_CREDS}"
        )
    if isinstance(e, bce.NoRegionError | bce.InvalidRegionError | bce.UnknownRegionError):
        region = _field(e, "region_name", "")
        said = f" {region!r}" if region else ""
        return UsageError(
            f"AWS region{said} is missing or invalid: set AWS_REGION (e.g. us-east-1) "
            "or region in the profile"
        )
    if isinstance(e, bce.InvalidIMDSEndpointError | bce.InvalidIMDSEndpointModeError):
        return UsageError(
            "invalid instance metadata settings: fix AWS_EC2_METADATA_SERVICE_ENDPOINT / "
            "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE (or unset them)"
        )
    if isinstance(e, bce.ParamValidationError):
        return UsageError(
            "S3 refused the request parameters (is the bucket name in --bucket-path valid?): "
            f"{_field(e, 'report')}"
        )
    if isinstance(e, bce.SSLError):
        return UsageError(
            f"TLS to the S3 endpoint failed ({_field(e, 'error')}): check --endpoint-url and "
            "AWS_CA_BUNDLE"
        )
    if isinstance(e, bce.ProxyConnectionError):
        return UsageError(
            f"cannot connect to the proxy {_field(e, 'proxy_url')}: fix HTTPS_PROXY / HTTP_PROXY"
        )
    if isinstance(e, bce.EndpointConnectionError | bce.ConnectTimeoutError):
        return UsageError(
            f"cannot reach the S3 endpoint {_field(e, 'endpoint_url')}: check --endpoint-url / "
            "AWS_ENDPOINT_URL and the network"
        )
    if isinstance(e, _SETTINGS_ERRORS):
        return UsageError(
            f"invalid AWS setting: {_one_line(e)}: fix the AWS_* variable or the profile "
            "setting it names"
        )
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return str(redactor._scrub(text))


#: Settings botocore refuses when building a client: each names the setting that is wrong
#: (AWS_DEFAULTS_MODE, AWS_REQUEST_CHECKSUM_CALCULATION, a profile's s3 addressing_style ...).
_SETTINGS_ERRORS = (
    bce.InvalidDefaultsMode,
    bce.InvalidChecksumConfigError,
    bce.InvalidRetryConfigurationError,
    bce.InvalidS3AddressingStyleError,
    bce.InvalidS3UsEast1RegionalEndpointConfigError,
    bce.InvalidSTSRegionalEndpointsConfigError,
    bce.InvalidEndpointDiscoveryConfigurationError,
    bce.InvalidEndpointConfigurationError,
    bce.InvalidProxiesConfigError,
    bce.InvalidDNSNameError,
    bce.UnknownSignatureVersionError,
    bce.UnsupportedSignatureVersionError,
    bce.UnsupportedS3ConfigurationError,
    bce.UnsupportedS3AccesspointConfigurationError,
    bce.UnsupportedS3ArnError,
    bce.UnsupportedOutpostResourceError,
    bce.BaseEndpointResolverError,
    bce.EndpointProviderError,
    bce.MissingDependencyException,
)
