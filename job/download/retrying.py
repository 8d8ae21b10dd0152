"""Which failures are worth another attempt, and the tenacity policy that retries them.

Retries live here and only here: botocore's own retry layer is switched off (see
:mod:`job.download.s3client`) so attempts never multiply. Transient trouble (throttling,
5xx, timeouts, resets, bodies cut short) is retried with exponential backoff and
full jitter; anything that will not change on a second try (403, 404, a missing
bucket, a corrupt or unsafe archive) fails at once.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.exceptions as bce
import urllib3.exceptions as u3e
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_random_exponential,
)

from job.core.config import RetrySettings
from job.core.errors import ItemError
from job.core.signals import stop_requested, wait_for_stop
from job.download.transfer import ShortBody

THROTTLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "RequestThrottled",
        "ServiceUnavailable",
    }
)
RETRYABLE_CODES = THROTTLE_CODES | {"InternalError", "RequestTimeout", "RequestTimeoutException"}

_TRANSPORT = (
    bce.ReadTimeoutError,
    bce.ConnectTimeoutError,
    bce.EndpointConnectionError,
    bce.ConnectionClosedError,
    bce.IncompleteReadError,
    bce.ResponseStreamingError,
    bce.HTTPClientError,
    u3e.ProtocolError,
    u3e.ReadTimeoutError,
    u3e.IncompleteRead,
    http.client.IncompleteRead,
    ConnectionError,
    socket.timeout,
    TimeoutError,
    ShortBody,
)


@dataclass(frozen=True)
class Diagnosis:
    retryable: bool
    throttled: bool
    cause: str


def client_error_code(exc: bce.ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {}) or {}
    status = int((exc.response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode") or 0)
    return str(error.get("Code") or status or "Unknown"), status


def diagnose(exc: BaseException) -> Diagnosis:
    """Classify an exception from one attempt; ``cause`` is short enough for a log field."""
    if isinstance(exc, bce.ClientError):
        code, status = client_error_code(exc)
        throttled = code in THROTTLE_CODES or status in (429, 503)
        retryable = throttled or code in RETRYABLE_CODES or status >= 500
        return Diagnosis(retryable, throttled, f"{code} (HTTP {status})" if status else code)
    if isinstance(exc, ItemError):
        return Diagnosis(exc.retryable, exc.throttled, exc.reason)
    if isinstance(exc, _TRANSPORT):
        name = type(exc).__name__
        detail = str(exc).splitlines()[0][:200] if str(exc) else ""
        return Diagnosis(True, False, f"{name}: {detail}" if detail else name)
    return Diagnosis(False, False, f"{type(exc).__name__}: {exc}")


def is_retryable(exc: BaseException) -> bool:
    return diagnose(exc).retryable


def _sleep(seconds: float) -> None:
    # Waiting on the stop event instead of time.sleep lets SIGTERM cut a backoff short.
    wait_for_stop(seconds)


def _stopped(_state: RetryCallState) -> bool:
    return stop_requested()


def retrying(
    settings: RetrySettings,
    *,
    on_retry: Callable[[int, BaseException, float], Any] | None = None,
) -> Retrying:
    """A tenacity Retrying for one item; ``on_retry(attempt, exc, wait)`` before each sleep."""

    def before_sleep(state: RetryCallState) -> None:
        if on_retry and state.outcome is not None:
            exc = state.outcome.exception()
            wait = state.next_action.sleep if state.next_action else 0.0
            if exc is not None:
                on_retry(state.attempt_number, exc, wait)

    return Retrying(
        stop=stop_any(stop_after_attempt(settings.attempts), _stopped),
        # Full jitter: each wait is uniform in [0, min(max, initial * 2**n)], so many
        # workers throttled at once do not come back in lock-step.
        wait=wait_random_exponential(multiplier=settings.initial_wait, max=settings.max_wait),
        retry=retry_if_exception(is_retryable),
        before_sleep=before_sleep,
        sleep=_sleep,
        reraise=True,
    )
