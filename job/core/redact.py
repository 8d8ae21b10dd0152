"""Text that may carry credentials, made safe to print.

Two kinds of secret reach text the job prints without being "known" to it:
credentials inside a URL (``--endpoint-url http://user:pass@host``, echoed by
usage errors, botocore's debug logs and our own events) and key material pasted
where it does not belong (an AWS secret key or session token in a flag value or
an error message). Registered secrets (the environment's) are replaced exactly
by :class:`job.core.logs.SecretRedactor`; this module catches the shapes.

The patterns are linear: one bounded character class each, no nesting.
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

#: ``scheme://userinfo@`` — whatever precedes the ``@`` of an authority is credentials.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,31}://)[^/\s@?#]{1,512}@")
#: An AWS secret access key: 40 base64 characters (hex digests, all lower case, excluded
#: below) standing alone.
_SECRET_KEY = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
#: A session token (STS): base64 runs of 100+ characters.
_TOKEN = re.compile(r"[A-Za-z0-9/+=]{100,}")


def redact_text(text: str) -> str:
    """``text`` with URL credentials and AWS-secret-shaped values replaced."""
    if "@" in text:
        text = _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)
    if len(text) >= 40:
        text = _TOKEN.sub(_key_or_not, text)
        text = _SECRET_KEY.sub(_key_or_not, text)
    return text


def _key_or_not(match: re.Match[str]) -> str:
    value = match.group(0)
    # Real keys and tokens are random base64: upper and lower case and digits. Digests,
    # ids and long file names (``GGGG…``) lack one of the three and are left alone.
    if (
        any(c.isupper() for c in value)
        and any(c.islower() for c in value)
        and any(c.isdigit() for c in value)
    ):
        return REDACTED
    return value
