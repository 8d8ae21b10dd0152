"""Type checks for decoded JSON values, with one-line reasons for journals that fail them.

A journal's fields may be missing or null (AIDE leaves many unset); a field of
the wrong type means the file is not what we think it is, and the journal is
reported as failed with a reason that names the node and the field.
"""

from __future__ import annotations

from typing import Any

from job.core.errors import ItemError


def number(raw: dict[str, Any], key: str, index: int) -> float | None:
    """A numeric field as float (ints too: AIDE writes whole seconds as ints)."""
    value = raw.get(key)
    if value is None:
        return None
    if type(value) is float:  # the common case, decided without the general checks
        return value
    if not is_number(value):
        raise ItemError(f"node {index}: '{key}' should be a number, found {describe(value)}")
    return to_float(value, f"node {index}: '{key}'")


def to_float(value: int | float, where: str) -> float:
    """``float(value)``; an integer too large for a float is a bad journal, not a crash."""
    try:
        return float(value)
    except OverflowError:
        raise ItemError(f"{where} is too large a number") from None


def optional(raw: dict[str, Any], key: str, expected: type, index: int) -> Any:
    value = raw.get(key)
    # A JSON decoder makes exact types, so identity settles nearly every call at
    # once (this runs several times per step of every journal); is_a has the rules.
    if value is None or type(value) is expected:
        return value
    if not is_a(value, expected):
        raise ItemError(
            f"node {index}: '{key}' should be {KIND_NAMES[expected]}, found {describe(value)}"
        )
    return value


def is_a(value: Any, expected: type) -> bool:
    """None or an instance of ``expected`` (a bool is not an int here, unlike in Python)."""
    if value is None:
        return True
    if expected is int and isinstance(value, bool):
        return False
    return isinstance(value, expected)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


KIND_NAMES: dict[type, str] = {str: "text", int: "a whole number", bool: "true/false"}


def describe(value: Any) -> str:
    """A JSON value's type as a reader of the journal would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
