"""Structured logging, configured once at the entry point.

Every event is a dictionary that runs through a structlog processor chain and is
rendered as one JSON line on stdout (the default, for cron and CI) or as coloured
console lines for people. Library code only ever calls ``get_logger().info(name,
**fields)``; it never decides how or where things are printed.

Secrets: the last processor before rendering replaces any known secret (AWS secret
key, session token) wherever it appears in any value, so neither our events nor a
botocore error message echoed into one can leak it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import orjson
import structlog

from job.core.console import ConsoleLines
from job.core.progress import interrupting
from job.core.redact import REDACTED, redact_text
from job.core.signals import request_stop

LogFormat = Literal["json", "console"]

_SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_REDACTED = REDACTED


class SecretRedactor:
    """Processor that blanks out registered secret strings in every event value."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def register(self, *values: str | None) -> None:
        # Very short strings would redact innocent text; real keys are >= 16 chars.
        self._secrets.update(v for v in values if v and len(v) >= 8)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, _REDACTED)
            return redact_text(value)
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        if isinstance(value, BaseException):
            return self._scrub(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
        # Always: URL credentials and key-shaped values need no registration.
        return {k: self._scrub(v) for k, v in event.items()}


redactor = SecretRedactor()


def register_secrets(values: Iterable[str | None]) -> None:
    redactor.register(*values)


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


class _ReaderGone:
    """The log stream, made quiet once its reader has gone (``... | head``).

    Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError,
    which used to end the run with a traceback. Here the first such write points
    the descriptor at /dev/null (so later writes, and the flush at exit, succeed)
    and asks the run to stop, as SIGPIPE stops other command-line tools: a dry
    run ends with status 0, a real run like any stopped run (see the CLI).
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_by_reader = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def _reader_gone(self) -> None:
        if self.closed_by_reader:
            return
        self.closed_by_reader = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # not a real descriptor: nothing will flush it at exit
            pass
        request_stop(signal.SIGPIPE)


class _LineLogger:
    """Writes each rendered event as a line, taking the progress bar off the screen first.

    structlog's PrintLogger would print the line wherever the cursor is, that is
    right after a progress bar drawn with ``\r`` on the same terminal.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        with interrupting():
            self._stream.write(message + "\n")
            self._stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def configure_logging(
    fmt: LogFormat = "json", *, level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Set up structlog for the whole process. Call once, from the CLI."""
    register_secrets(os.environ.get(name) for name in _SECRET_ENV_VARS)
    out: Any = _ReaderGone(stream or sys.stdout)
    renderer: Any
    if fmt == "console":
        renderer = ConsoleLines(out, colors=out.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_args: _LineLogger(out),
        cache_logger_on_first_use=False,
    )
    # botocore/urllib3 log through stdlib logging; keep them quiet unless asked, and
    # route what they do say through the same redaction.
    # At debug level botocore logs whole requests (headers included): the redaction
    # filter below is what keeps a session token out of them.
    logging.basicConfig(
        level=logging.DEBUG if level <= logging.DEBUG else logging.WARNING,
        handlers=[_BarAwareHandler(sys.stderr)],
        format="%(name)s: %(message)s",
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_StdlibRedactionFilter())
    # botocore warns, with a whole traceback, when credentials or an SSO token
    # cannot be refreshed, then raises the error that the CLI turns into its one
    # line; below debug that warning would only bury the line under a traceback.
    for name in _CREDENTIAL_LOGGERS:
        logging.getLogger(name).setLevel(
            logging.NOTSET if level <= logging.DEBUG else logging.ERROR
        )


_CREDENTIAL_LOGGERS = ("botocore.credentials", "botocore.tokens", "botocore.utils")


class _BarAwareHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """botocore's own records, written on stderr like the progress bar: clear it first."""

    def emit(self, record: logging.LogRecord) -> None:
        with interrupting():
            super().emit(record)


class _StdlibRedactionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redactor._scrub(record.getMessage())
        record.args = None
        return True


def get_logger(**initial: Any) -> Any:
    return structlog.get_logger(**initial)
