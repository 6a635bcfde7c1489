"""The reference of a registered model version, from what the registry recorded at registration.

A version records its training tables (`ModelVersion.data`: repo, commit, path) and their
data-preparation profiles (`ModelVersion.profile`, keyed `"repo@commit12:path"`). The
reference comes from the first training table's stored profile, so building it reads no
data; a table registered without a profile is streamed once from its commit (bounded
memory: it is profiled batch by batch, then binned from the profile's sketches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadline.data.tables import TABLE_SUFFIXES, iter_batches
from threadline.errors import InvalidArgument
from threadline.monitor.reference import DEFAULT_BINS, DEFAULT_TOP, Reference
from threadline.prep.profile import TableProfile

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from threadline.registry import ModelRegistry
    from threadline.registry.records import ModelVersion


def profile_key(entry: Mapping[str, Any]) -> str:
    """The key `ModelVersion.profile` files a training table's profile under."""
    key = f"{entry['repo']}@{str(entry['commit'])[:12]}"
    return key + (f":{entry['path']}" if entry.get("path") else "")


def reference_for_version(
    registry: ModelRegistry,
    version: ModelVersion | str,
    columns: Sequence[str] | None = None,
    *,
    bins: int = DEFAULT_BINS,
    top: int = DEFAULT_TOP,
) -> Reference:
    """The reference summary of a model version's (first) training table.

    Args:
        registry: the registry holding the version (its data repos are read on fallback).
        version: a `ModelVersion`, or `"name@version"` / `"name@alias"`.
        columns: the columns to keep (default: every numeric, string and boolean column).
        bins: numeric bins per column; top: categories listed per categorical column.

    Raises:
        InvalidArgument: the version records no training data (register it with `data=`).
    """
    if isinstance(version, str):
        name, _, ref = version.rpartition("@")
        if not name:
            raise InvalidArgument(f"{version!r} is not a version; write it as 'name@3' or 'name@production'")
        version = registry.get_version(name, int(ref) if ref.isdigit() else ref)
    for entry in version.data:
        stored = version.profile.get(profile_key(entry))
        if stored is not None:
            return Reference.from_profile(stored, columns, bins=bins, top=top)
    for entry in version.data:
        path = str(entry.get("path") or "")
        if path.lower().endswith(TABLE_SUFFIXES):
            ref_text = f"{entry['repo']}@{entry['commit']}:{path}"
            profile = TableProfile.from_batches(iter_batches(registry.repos, ref_text, columns=columns))
            return Reference.from_profile(profile.to_dict(), columns, bins=bins, top=top)
    raise InvalidArgument(f"model version {version.uri} records no training table to build a reference "
                          "from; register it with data=['repo@branch:table.parquet'], or build one "
                          "with Reference.from_table(training_rows)")


__all__ = ["profile_key", "reference_for_version"]
