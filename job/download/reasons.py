"""One line saying why an archive failed, whatever raised, wherever it was raised.

The same words must come out whether the archive was received in one of the
download's worker processes or in the job's own threads, so both ask here.
"""

from __future__ import annotations

import errno

from job.download.retrying import diagnose


def failure_reason(exc: BaseException) -> str:
    """One line for the archive's log event and manifest record, whatever ``exc`` is."""
    return " ".join(_explain(exc).split())[:500]


def _explain(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "no space left on the output drive: free space or point --output-dir elsewhere"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "file too large for the output drive (file-size limit reached)"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EROFS):
        return f"cannot write to the output drive: {exc.strerror} ({exc.filename})"
    if isinstance(exc, OSError) and exc.errno is not None and exc.filename is not None:
        # The drive refused a name of this archive's (a file where a folder goes...).
        return f"cannot write to the output drive: {exc.strerror} ({exc.filename})"
    return diagnose(exc).cause
