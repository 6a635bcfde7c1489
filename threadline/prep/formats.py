"""Checks shared by every preparation document read back from YAML or JSON (specs, schemas)."""

from __future__ import annotations

from typing import Any

from threadline.errors import InvalidArgument


def check_document(data: Any, *, format_id: str, what: str, keys: set[str]) -> dict[str, Any]:
    """Return `data` if it is a mapping with the right format id and only known keys.

    Args:
        data: the parsed document.
        format_id: the `format` value this reader understands, e.g. "threadline.split/1".
        what: how messages name the document, e.g. "split definition".
        keys: the keys a document may have besides `format`.

    Raises:
        InvalidArgument: naming the format found or the unknown keys, and what was expected.
    """
    if not isinstance(data, dict) or data.get("format") != format_id:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InvalidArgument(f"not a {what}: format is {found!r}, expected {format_id!r}")
    unknown = sorted(str(k) for k in set(data) - keys - {"format"})
    if unknown:
        raise InvalidArgument(
            f"{what} has unknown keys {unknown}; known: format, {', '.join(sorted(keys))}"
        )
    return data
