"""Write a file incrementally, yet publish it atomically.

:mod:`job.core.atomic` takes the whole content at once; a report of a 50 MB journal is
better streamed. Same guarantees: the text goes to a hidden temporary sibling
(named by :func:`job.core.atomic.temp_sibling`, so cleanup and discovery recognise it),
is flushed to disk, and only then renamed over the target. On any exception the
temporary file is removed and the previous target, if any, is left untouched.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from job.core.atomic import temp_sibling
from job.core.textsafe import REPLACEMENT

#: Encoding error handler that writes U+FFFD for anything UTF-8 cannot encode (lone
#: surrogates): the built-in "replace" would write "?", which hides the problem.
ENCODE_ERRORS = "job-replacement-character"
#: Write buffer: a report is written a step at a time in small pieces (a header,
#: four titles and blocks); with the default 8 KiB most pieces were a write call
#: of their own, ~1.2 ms per 1 MB journal (bench, issue #6).
_BUFFER = 1 << 20


def _replacement(exc: UnicodeError) -> tuple[bytes, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    # Bytes, because CPython's UTF-8 encoder accepts only ASCII text from a handler.
    return _REPLACEMENT_BYTES * (exc.end - exc.start), exc.end


_REPLACEMENT_BYTES = REPLACEMENT.encode("utf-8")
codecs.register_error(ENCODE_ERRORS, _replacement)


@contextmanager
def atomic_binary_file(target: Path) -> Iterator[BinaryIO]:
    """Yield a file opened for writing bytes; on a clean exit it replaces ``target`` in one rename.

    Text goes in encoded with ``ENCODE_ERRORS`` (see :func:`job.report.text.encode`).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(target)
    try:
        with open(tmp, "wb", buffering=_BUFFER) as fh:
            yield fh
        # No fsync: the rename alone keeps half-written reports invisible to readers
        # and survives a killed process; reports are regenerated from their journal,
        # and an fsync per report cost ~10% of parse time (bench, issue #6).
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
