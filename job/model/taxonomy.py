"""Why a step or a run failed, in words a reader can count: the failure taxonomy.

An exception type alone says little ("KeyError", "RuntimeError"); what the team
acts on is the detail: *which* module is missing, *which* column was asked for,
whether a RuntimeError was really CUDA running out of memory. This module turns
``(exception type, message, terminal output)`` into a short, stable detail such as
``"missing module: xgboost"`` so thousands of failures aggregate into a handful
of causes. It also pulls the final error out of the logs of agents that leave no
AIDE journal (a Python traceback or an ``ERROR ...`` line).

Everything here is pure and cheap: it runs once per failed step inside the parse
workers, so it only looks at the tail of long outputs.

A detail is ``"<category>"`` or ``"<category>: <value>"``; :func:`detail_category`
splits the category back out for the charts, so categories must not contain
``": "``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from job.model.journal import Journal

#: How much of a step's terminal output is searched for clues (tracebacks are at the end).
_TAIL_CHARS = 16 * 1024
#: Longest exception message classified (characters). Messages are one line in
#: practice; a hostile one is cut here first, so every rule's cost is bounded too.
MAX_MESSAGE_CHARS = 8 * 1024
#: Longest value kept in a detail: details are chart labels and CSV cells.
_MAX_VALUE = 80

# Categories (stable strings: charts, CSV and tests rely on them).
TIMEOUT = "timeout"
CUDA_OOM = "CUDA out of memory"
HOST_OOM = "host out of memory"
MISSING_MODULE = "missing module"
CANNOT_IMPORT = "cannot import name"
IMPORT_NOT_ALLOWED = "import not allowed"
MISSING_KEY = "missing key"
MISSING_COLUMNS = "missing columns"
FILE_NOT_FOUND = "file not found"
CANNOT_READ_FILE = "cannot read file"
SHAPE_MISMATCH = "shape mismatch"
NAN_INPUT = "NaN or infinity in input"
MISSING_ATTRIBUTE = "missing attribute"
UNEXPECTED_KEYWORD = "unexpected keyword argument"
GPU_TENSOR_TO_NUMPY = "GPU tensor passed to numpy"
NO_GPU = "no GPU available"
UNDEFINED_NAME = "undefined name"
SYNTAX_ERROR = "syntax error"
NOT_NUMERIC = "non-numeric value"
RATE_LIMIT = "API rate limit"
PROMPT_TOO_LONG = "prompt too long"
STEP_LIMIT = "agent step limit"
DISK_FULL = "disk full"
NETWORK = "network error"
#: Every category a detail can have (the charts group by these).
CATEGORIES = (
    TIMEOUT,
    CUDA_OOM,
    HOST_OOM,
    MISSING_MODULE,
    CANNOT_IMPORT,
    IMPORT_NOT_ALLOWED,
    MISSING_KEY,
    MISSING_COLUMNS,
    FILE_NOT_FOUND,
    CANNOT_READ_FILE,
    SHAPE_MISMATCH,
    NAN_INPUT,
    MISSING_ATTRIBUTE,
    UNEXPECTED_KEYWORD,
    GPU_TENSOR_TO_NUMPY,
    NO_GPU,
    UNDEFINED_NAME,
    SYNTAX_ERROR,
    NOT_NUMERIC,
    RATE_LIMIT,
    PROMPT_TOO_LONG,
    STEP_LIMIT,
    DISK_FULL,
    NETWORK,
)


@dataclass(frozen=True, slots=True)
class Detail:
    category: str
    value: str | None = None

    def __str__(self) -> str:
        return self.category if not self.value else f"{self.category}: {self.value}"


def failure_detail(
    exc_type: str | None, message: str | None, term_out: str | None = None
) -> str | None:
    """The detail that matters about one failure, or None when the type says it all.

    ``exc_type`` is AIDE's ``exc_type`` (a class name; a dotted name is fine),
    ``message`` the exception's one-line message, ``term_out`` the step's terminal
    output (only its tail is read, and only when the message is not enough).
    """
    found = classify(exc_type, message, term_out)
    return None if found is None else str(found)


def step_details(journal: Journal) -> list[str | None]:
    """:func:`failure_detail` of every step, by position (None for steps that did not raise).

    Worked out once per journal: the journal page and the index entry both show
    it, and classifying reads each failing step's output.
    """
    return [
        failure_detail(n.error.type, n.error.message, n.term_out) if n.error else None
        for n in journal.nodes
    ]


def detail_category(detail: str | None) -> str | None:
    """``"missing module: xgboost"`` -> ``"missing module"``."""
    if not detail:
        return None
    return detail.split(": ", 1)[0]


def classify(
    exc_type: str | None, message: str | None, term_out: str | None = None
) -> Detail | None:
    """Like :func:`failure_detail`, as a :class:`Detail` (category and value apart)."""
    short = _short_type(exc_type)
    msg = (message or "").strip()[:MAX_MESSAGE_CHARS]
    context = _Context(short, msg, term_out)
    for rule in _RULES:
        found = rule(context)
        if found is not None:
            return found
    return None


class _Context:
    """What the rules look at; the output's tail is cut only if a rule asks for it."""

    __slots__ = ("_tail", "_term_out", "msg", "type")

    def __init__(self, exc_type: str, msg: str, term_out: str | None) -> None:
        self.type = exc_type
        self.msg = msg
        self._term_out = term_out
        self._tail: str | None = None

    @property
    def tail(self) -> str:
        if self._tail is None:
            self._tail = (self._term_out or "")[-_TAIL_CHARS:]
        return self._tail

    def text(self) -> str:
        """Message and output tail together, for clues that may sit in either."""
        return f"{self.msg}\n{self.tail}"


def _short_type(exc_type: str | None) -> str:
    """``torch.cuda.OutOfMemoryError`` -> ``OutOfMemoryError``."""
    return (exc_type or "").strip().rsplit(".", 1)[-1]


def _clip(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= _MAX_VALUE else value[: _MAX_VALUE - 1] + "…"


def _quoted(value: str) -> str:
    """A key as Python prints it: ``'target'`` (AIDE's ``args`` lose the quotes)."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value
    if (
        re.fullmatch(r"-?\d+(\.\d+)?", value)
        or value in ("None", "True", "False")
        or (value[:1] == "(" and value[-1:] == ")" and "\n" not in value)
    ):
        return value  # numbers, None and tuples are printed without quotes
    return repr(value)


# --- rules, in order: the first that matches decides ---------------------------------

_TIMEOUT_TYPES = {"TimeoutError", "TimeoutExpired", "Timeout", "ReadTimeout", "DeadlineExceeded"}
_TIMEOUT_TEXT = re.compile(
    r"exceeded the time limit|\btimed out\b|time limit exceeded|deadline exceeded|"
    r"DUE TO TIME LIMIT",
    re.IGNORECASE,
)


def _timeout(c: _Context) -> Detail | None:
    if c.type in _TIMEOUT_TYPES or _TIMEOUT_TEXT.search(c.msg):
        return Detail(TIMEOUT)
    # AIDE interrupts a step that runs too long: the traceback ends in KeyboardInterrupt.
    if c.type in ("KeyboardInterrupt", "") and c.tail and "exceeded the time limit" in c.tail:
        return Detail(TIMEOUT)
    return None


def _cuda_oom(c: _Context) -> Detail | None:
    if re.search(r"CUDA out of memory|CUDA error: out of memory|CUBLAS_STATUS_ALLOC_FAILED", c.msg):
        return Detail(CUDA_OOM)
    if c.type == "OutOfMemoryError" and ("CUDA" in c.msg or "GPU" in c.msg or not c.msg):
        return Detail(CUDA_OOM)
    return None


def _host_oom(c: _Context) -> Detail | None:
    if c.type in ("MemoryError", "_ArrayMemoryError") or re.match(r"Unable to allocate ", c.msg):
        return Detail(HOST_OOM)
    return None


_NO_MODULE = re.compile(r"No module named ['\"]?([\w.\-]+)['\"]?")
_CANNOT_IMPORT = re.compile(
    r"cannot import name ['\"]?([\w.]+)['\"]?(?: from ['\"]?([\w.]+)['\"]?)?"
)
_NOT_ALLOWED = re.compile(r"Import (?:of|from) ([\w.]+) is not allowed")


def _imports(c: _Context) -> Detail | None:
    found = _NO_MODULE.search(c.msg)
    if found:
        return Detail(MISSING_MODULE, _clip(found[1]))
    found = _NOT_ALLOWED.search(c.msg)
    if found:
        return Detail(IMPORT_NOT_ALLOWED, _clip(found[1]))
    found = _CANNOT_IMPORT.search(c.msg)
    if found:
        name = f"{found[2]}.{found[1]}" if found[2] else found[1]
        return Detail(CANNOT_IMPORT, _clip(name))
    if c.type == "ModuleNotFoundError":
        return Detail(MISSING_MODULE, _clip(c.msg) if c.msg else None)
    return None


_PANDAS_NONE_OF = re.compile(r"None of \[(?:Index\()?(\[[^\]\n]{0,2000}\])")


def _pandas_not_in(msg: str) -> str | None:
    """``['a', 'b']`` of ``"['a', 'b'] not in index"``.

    Found from the literal end backwards: a regex scanning forward from every
    ``[`` took quadratic time on text full of brackets.
    """
    end = msg.find("] not in index")
    while end >= 0:
        line_start = msg.rfind("\n", 0, end) + 1
        start = msg.find("[", line_start, end + 1)
        if start >= 0:
            return msg[start : end + 1]
        end = msg.find("] not in index", end + 1)
    return None


def _keys(c: _Context) -> Detail | None:
    if c.type != "KeyError":
        return None
    found = _PANDAS_NONE_OF.search(c.msg)
    columns = found[1] if found else _pandas_not_in(c.msg)
    if columns:
        return Detail(MISSING_COLUMNS, _clip(columns))
    if not c.msg:
        return Detail(MISSING_KEY)
    return Detail(MISSING_KEY, _clip(_quoted(c.msg)))


_PATH_AT_END = re.compile(r"No such file or directory: ['\"](.+?)['\"]\s*$")
_H5_NAME = re.compile(r"unable to open file: name = ['\"](.+?)['\"]")
_DOES_NOT_EXIST = re.compile(r"(?:File|Path|path|file) ['\"]?([^\n]{1,1000}?)['\"]? does not exist")
_CANNOT_READ = re.compile(r"cannot read file ['\"]?(\S+?)['\"]?\s*$")


def _files(c: _Context) -> Detail | None:
    for pattern in (_PATH_AT_END, _H5_NAME, _DOES_NOT_EXIST):
        found = pattern.search(c.msg)
        if found:
            return Detail(FILE_NOT_FOUND, _clip(found[1]))
    found = _CANNOT_READ.search(c.msg)
    if found:
        return Detail(CANNOT_READ_FILE, _clip(found[1]))
    if c.type == "FileNotFoundError" or "No such file or directory" in c.msg:
        # The message may have lost the path (AIDE's args fallback): look in the output.
        found = _PATH_AT_END.search(c.tail) if c.tail else None
        if found is None and c.tail:
            found = re.search(r"No such file or directory: ['\"](.+?)['\"]", c.tail)
        return Detail(FILE_NOT_FOUND, _clip(found[1]) if found else None)
    return None


_SHAPE = re.compile(
    r"shapes cannot be multiplied|inconsistent numbers of samples|"
    r"Length of labels differs|shapes .* not aligned|could not be broadcast|size mismatch|"
    r"Expected input batch_size|Length of values \(\d+\) does not match length of index|"
    r"features, but \w+ is expecting \d+ features|must match the size of tensor|"
    r"expected .*(?:shape|size|dimension).* but (?:got|found)|Shape of passed values is|"
    r"cannot reshape array|dimension mismatch|input variables with inconsistent",
    re.IGNORECASE,
)


def _shape(c: _Context) -> Detail | None:
    return Detail(SHAPE_MISMATCH) if _SHAPE.search(c.msg) else None


def _nan(c: _Context) -> Detail | None:
    if re.search(
        r"contains NaN|Input contains (?:NaN|infinity)|NaN values? (?:found|detected)", c.msg
    ):
        return Detail(NAN_INPUT)
    return None


_NO_ATTR_OBJECT = re.compile(r"'([\w.]+)' object has no attribute '(\w+)'")
_NO_ATTR_MODULE = re.compile(r"module '([\w.]+)' has no attribute '(\w+)'")
_NO_ATTR_TYPE = re.compile(r"type object '([\w.]+)' has no attribute '(\w+)'")


def _attributes(c: _Context) -> Detail | None:
    for pattern in (_NO_ATTR_MODULE, _NO_ATTR_TYPE, _NO_ATTR_OBJECT):
        found = pattern.search(c.msg)
        if found:
            return Detail(MISSING_ATTRIBUTE, _clip(f"{found[1]}.{found[2]}"))
    return None


_UNEXPECTED_KW = re.compile(r"got an unexpected keyword argument '(\w{1,200})'")
_CALLABLE_BEFORE = re.compile(r"[\w.]{1,200}\(\) $")


def _keywords(c: _Context) -> Detail | None:
    found = _UNEXPECTED_KW.search(c.msg)
    if found is None:
        return None
    # The callable's name just before the literal, looked for in a bounded window:
    # a pattern starting with [\w.]+ retried at every position was quadratic.
    window = c.msg[max(0, found.start() - 203) : found.start()]
    name = _CALLABLE_BEFORE.search(window)
    if name:
        return Detail(UNEXPECTED_KEYWORD, _clip(f"{name[0][:-3]}({found[1]}=…)"))
    return Detail(UNEXPECTED_KEYWORD, _clip(found[1]))


def _gpu(c: _Context) -> Detail | None:
    if re.search(r"can't convert cuda:?\d* device type tensor to numpy", c.msg):
        return Detail(GPU_TENSOR_TO_NUMPY)
    if re.search(
        r"no CUDA GPUs are available|Torch not compiled with CUDA|"
        r"Found no NVIDIA driver|CUDA driver version is insufficient",
        c.msg,
    ):
        return Detail(NO_GPU)
    return None


def _names(c: _Context) -> Detail | None:
    found = re.search(r"name '(\w+)' is not defined", c.msg)
    if found:
        return Detail(UNDEFINED_NAME, found[1])
    if c.type in ("SyntaxError", "IndentationError", "TabError"):
        return Detail(SYNTAX_ERROR)
    return None


def _values(c: _Context) -> Detail | None:
    found = re.search(r"could not convert string to float: (.+)$", c.msg)
    if found:
        return Detail(NOT_NUMERIC, _clip(found[1]))
    return None


def _agents(c: _Context) -> Detail | None:
    """Failures of the agent itself (LLM API, step budget), seen in non-AIDE logs."""
    if c.type == "RateLimitError" or re.search(r"rate.limit|Error code: 429", c.msg, re.IGNORECASE):
        return Detail(RATE_LIMIT)
    if c.type in ("TooLongPromptError", "ContextWindowExceededError") or re.search(
        r"prompt is too long|maximum context length|context_length_exceeded|context window",
        c.msg,
        re.IGNORECASE,
    ):
        return Detail(PROMPT_TOO_LONG)
    if c.type in ("AgentMaxStepsError", "GraphRecursionError") or re.search(
        r"Reached max steps|Recursion limit of \d+ reached|maximum number of (?:steps|iterations)",
        c.msg,
        re.IGNORECASE,
    ):
        return Detail(STEP_LIMIT)
    return None


def _system(c: _Context) -> Detail | None:
    if "No space left on device" in c.msg:
        return Detail(DISK_FULL)
    if c.type in ("ConnectionError", "ConnectTimeout", "APIConnectionError") or re.search(
        r"Max retries exceeded|Temporary failure in name resolution|Connection refused|"
        r"Network is unreachable",
        c.msg,
    ):
        return Detail(NETWORK)
    return None


_RULES: tuple[Callable[[_Context], Detail | None], ...] = (
    _timeout,
    _cuda_oom,
    _host_oom,
    _imports,
    _keys,
    _files,
    _shape,
    _nan,
    _attributes,
    _keywords,
    _gpu,
    _names,
    _values,
    _agents,
    _system,
)


# --- the last error in a log ---------------------------------------------------------

#: How much of a log's end is read (agent logs reach hundreds of MB; the error is last).
LOG_TAIL_BYTES = 256 * 1024
#: Longest traceback excerpt kept for display.
_MAX_EXCERPT = 6000

_HEADER = "Traceback (most recent call last):"
_LINE = re.compile(r"^.*$", re.M)
_EXC_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::[ \t]?(?P<msg>.*))?$")
_LEVEL_WORD = re.compile(r"\b(?:ERROR|CRITICAL|FATAL)\b")
_LEVEL = re.compile(r"\b(?:ERROR|CRITICAL|FATAL)\b[\s:\-\]|]*")
#: Dotted names, each found once (no nested repetition to backtrack into).
_DOTTED_NAME = re.compile(r"[A-Za-z_][\w.]*")
_TYPE_SUFFIXES = ("Error", "Exception", "Interrupt", "Exit")


def _types_in_text(text: str) -> list[str]:
    """Exception class names in ``text`` (``KeyError``, ``numpy.core._exceptions.X``)."""
    found = []
    for match in _DOTTED_NAME.finditer(text):
        name = match[0].rstrip(".")
        last = name.rsplit(".", 1)[-1]
        starts_word = match.start() == 0 or not text[match.start() - 1].isalnum()
        if (
            starts_word
            and last[:1].isupper()
            and last.endswith(_TYPE_SUFFIXES)
            and ".." not in name
        ):
            found.append(name)
    return found


@dataclass(frozen=True, slots=True)
class LogError:
    """The error that ended a run, as its log shows it."""

    type: str | None  # short exception class name; None for an ERROR line naming none
    message: str  # one line
    excerpt: str  # the traceback, or the ERROR line
    source: str  # "traceback" or "error line"

    @property
    def detail(self) -> str | None:
        return failure_detail(self.type, self.message, self.excerpt)


def last_error(text: str) -> LogError | None:
    """The last traceback or ``ERROR`` line of a log, whichever ended the run.

    A traceback wins over an ERROR line printed right after it that only repeats
    its type (biomlbench's ``ERROR: Run ... failed: KeyError``), because the
    traceback carries the message. A later ERROR line about something else (the
    run timing out after an earlier, recovered exception) wins over the traceback.
    """
    traceback = _last_traceback(text)
    line = _last_error_line(text, after=traceback[1] if traceback else 0)
    if traceback is None:
        return line
    found, _end = traceback
    if line is None:
        return found
    if found.type and (found.type in line.message or line.type == found.type):
        return found
    return line


def _last_traceback(text: str) -> tuple[LogError, int] | None:
    """The last traceback and the offset just past its exception line."""
    at = text.rfind(_HEADER)
    if at < 0:
        return None
    line_start = text.rfind("\n", 0, at) + 1
    prefix = text[line_start:at]  # e.g. "[Worker 0] " when every log line is prefixed
    header_end = text.find("\n", at)
    header_end = len(text) if header_end < 0 else header_end
    kept = ["Traceback (most recent call last):"]
    end = header_end
    exc_line: str | None = None
    for match in _LINE.finditer(text, header_end):
        end = match.end()
        raw = match.group(0)
        line = (raw[len(prefix) :] if prefix and raw.startswith(prefix) else raw).rstrip("\r")
        if not line.strip():
            continue
        if line[:1] in (" ", "\t"):  # frames, source lines, carets
            kept.append(line)
            continue
        exc_line = line.strip()
        kept.append(exc_line)
        break
    excerpt = _excerpt("\n".join(kept))
    if exc_line is None:
        return LogError(None, "", excerpt, "traceback"), end
    match = _EXC_LINE.match(exc_line)
    if match is None:
        return LogError(None, _one_line(exc_line), excerpt, "traceback"), end
    return LogError(
        _short_type(match["type"]), _one_line(match["msg"] or ""), excerpt, "traceback"
    ), end


def _last_error_line(text: str, after: int) -> LogError | None:
    last = None
    for match in _LEVEL_WORD.finditer(text, after):
        last = match
    if last is None:
        return None
    start = text.rfind("\n", 0, last.start()) + 1
    stop = text.find("\n", last.end())
    line = text[start : len(text) if stop < 0 else stop].strip()
    level = _LEVEL.search(line)
    message = line[level.end() :] if level else line
    types = _types_in_text(message)
    exc_type = _short_type(types[-1]) if types else None
    return LogError(exc_type, _one_line(message) or line, _excerpt(line), "error line")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _excerpt(text: str) -> str:
    if len(text) <= _MAX_EXCERPT:
        return text
    return "…\n" + text[-_MAX_EXCERPT:]
