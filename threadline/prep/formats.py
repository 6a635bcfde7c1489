"""Checks shared by the preparation specs: their documents (YAML/JSON) and the columns they name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import pyarrow as pa


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


def check_columns(
    schema: pa.Schema,
    checks: Iterable[tuple[str, Callable[[pa.DataType], bool], str]],
    *,
    what: str,
    detail: Callable[[str], str] = lambda _name: "",
) -> None:
    """Check that each named column exists and has a type the step accepts.

    Args:
        schema: the table's schema.
        checks: (column, accepts its type, what the type must be) triples.
        what: how messages name the step's columns, e.g. "split column".
        detail: extra words after the column's name in a type error.

    Raises:
        InvalidArgument: naming the missing column (with the table's columns) or the column
            whose type does not fit and the types that would.
    """
    for name, ok, wanted in checks:
        index = schema.get_field_index(name)
        if index < 0:
            raise InvalidArgument(f"{what} {name!r} is not in the table; columns: {schema.names}")
        dtype = schema.field(index).type
        if not ok(dtype):
            raise InvalidArgument(f"{what} {name!r}{detail(name)} has type {dtype}; it must be {wanted}")
