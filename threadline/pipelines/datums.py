"""Datums: the parts of an input a step processes independently, and what changed between runs.

A step may split one input into datums - each file, each file matching a glob, or each folder
`depth` levels down (a partitioned table's `date=.../`). A datum's key is the hash of its files'
paths and content keys, read from the input commit's manifest: no data is re-read to decide
what changed. A datum's output lives under the folder named after it in the output commit
(`<datum>/...`), so on a new input commit the step processes only new and changed datums,
keeps the output entries of unchanged ones (manifest entries: the content store holds each
byte once) and drops those of removed ones.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import blake3

if TYPE_CHECKING:
    from collections.abc import Iterable

    from threadline.data.manifest import FileEntry
    from threadline.pipelines.spec import DatumSpec


class Datum(NamedTuple):
    """One datum: its name (the folder of its output), its files (in-repo paths), its key.

    A named tuple: a run over a thousand datums builds a thousand of them, and a tuple is
    built in half a frozen dataclass's time.
    """

    name: str
    files: tuple[str, ...]
    key: str


def split(entries: Iterable[FileEntry], base: str, spec: DatumSpec) -> dict[str, Datum]:
    """The datums of the files under in-repo folder `base` (paths relative to it name them)."""
    strip = len(base) + 1 if base else 0
    if len(_FILE_KEYS) > _FILE_KEYS_MAX:
        _FILE_KEYS.clear()
    if len(_FILE_DATUMS) > _FILE_KEYS_MAX:
        _FILE_DATUMS.clear()
    if spec.kind in ("file", "glob"):  # a datum per file: no grouping (a watch re-plans often)
        out: dict[str, Datum] = {}
        known = _FILE_DATUMS.get
        glob = spec.pattern if spec.kind == "glob" else None
        for entry in entries:
            if glob is not None and not fnmatch.fnmatchcase(entry.path[strip:], glob):
                continue
            seen = (entry.path, strip, entry.key, entry.executable)
            datum = known(seen)
            if datum is None:
                rel = entry.path[strip:]
                datum = _FILE_DATUMS[seen] = Datum(rel, (entry.path,),
                                                   _file_key(rel, entry.key, entry.executable))
            out[datum.name] = datum
        return out
    groups: dict[str, list[FileEntry]] = {}
    for entry in entries:
        parts = entry.path[strip:].split("/")
        if len(parts) <= spec.depth:  # a file above the partition level is no datum
            continue
        groups.setdefault("/".join(parts[: spec.depth]), []).append(entry)
    out = {}
    for name, group in groups.items():
        if len(group) == 1:  # a partition of one file: the same key as that file's datum
            (entry,) = group
            out[name] = Datum(name, (entry.path,), _file_key(entry.path[strip:], entry.key,
                                                             entry.executable))
            continue
        digest = blake3.blake3()
        for entry in sorted(group, key=lambda e: e.path):
            digest.update(f"{entry.path[strip:]}\0{entry.key}\0{int(entry.executable)}\n".encode())
        out[name] = Datum(name, tuple(sorted(e.path for e in group)), digest.hexdigest())
    return out


#: datum keys of one-file datums seen before, by (relative path, content key, executable):
#: a watching process re-plans a step on every new commit, and most files are the last run's
_FILE_KEYS: dict[tuple[str, str, bool], str] = {}
_FILE_KEYS_MAX = 200_000
#: the one-file datums themselves, by (path, length of the base folder's prefix, content key,
#: executable): re-planning then builds no new datum for a file it saw before
_FILE_DATUMS: dict[tuple[str, int, str, bool], Datum] = {}


def _file_key(rel: str, key: str, executable: bool) -> str:
    found = _FILE_KEYS.get((rel, key, executable))
    if found is None:
        line = f"{rel}\0{key}\0{int(executable)}\n"
        found = _FILE_KEYS[rel, key, executable] = blake3.blake3(line.encode()).hexdigest()
    return found


def content_key(datums: dict[str, Datum]) -> str:
    """One hash over every datum's name and key: the datum input's part of the cache key."""
    lines = "".join([f"{name}\0{datums[name].key}\n" for name in sorted(datums)])
    return blake3.blake3(lines.encode()).hexdigest()


@dataclass(frozen=True)
class DatumPlan:
    """What a run of a datum step does: process some datums, reuse others, drop the removed."""

    process: list[Datum]
    reuse: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: the earlier output commit the reused datums' outputs come from
    previous: str | None = None


def plan(
    current: dict[str, Datum], previous: dict[str, str] | None, previous_commit: str | None
) -> DatumPlan:
    """Compare this input's datums with those an earlier output was made from (name -> key)."""
    if previous is None or previous_commit is None:
        return DatumPlan(sorted(current.values(), key=lambda d: d.name))
    process: list[Datum] = []
    reuse: list[str] = []
    for name in sorted(current):
        datum = current[name]
        if previous.get(name) == datum.key:
            reuse.append(name)
        else:
            process.append(datum)
    removed = sorted(previous.keys() - current.keys())
    return DatumPlan(process, reuse, removed, previous_commit)
