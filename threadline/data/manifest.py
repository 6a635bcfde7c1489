"""Manifests: the tree of a commit, path -> stored file, kept as one content-addressed object.

Format `threadline.manifest/1` (canonical JSON, keys sorted, no spaces):
    {"files": [[path, key, size, chunks, executable, rows], ...], "format": "threadline.manifest/1"}
`key` names the file's content (see `threadline.storage.cas.StoredFile`); `rows` is the row
count of CSV/TSV/Parquet files, or null.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from threadline.errors import IntegrityError
from threadline.storage.cas import StoredFile

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

FORMAT = "threadline.manifest/1"
_ROW = json.JSONEncoder(separators=(",", ":"))  # a row of `encode`, as json.dumps writes it


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit."""

    path: str
    key: str
    size: int
    chunks: int
    executable: bool = False
    rows: int | None = None

    @property
    def stored(self) -> StoredFile:
        """The storage-layer handle of this file's content."""
        return StoredFile(self.key, self.size, self.chunks)

    def same_content(self, other: FileEntry) -> bool:
        """Whether two entries hold the same bytes and mode."""
        return (self.key, self.size, self.executable) == (other.key, other.size, other.executable)


class Manifest:
    """An immutable mapping of in-repo paths to file entries."""

    def __init__(self, entries: Iterable[FileEntry] = ()) -> None:
        self.files: dict[str, FileEntry] = {e.path: e for e in sorted(entries, key=lambda e: e.path)}
        self._sorted: list[str] | None = None
        #: path -> that file's row of `encode`, for the files encoded already
        self._rows: dict[str, str] = {}
        self._total_bytes: int | None = None

    def updated(self, entries: Iterable[FileEntry], drop: Iterable[str] = ()) -> Manifest:
        """This tree without the files at or under each path of `drop`, with `entries` added
        (each replacing the file at its path).

        The rows this tree encoded already move to the result, for the files it keeps: a commit
        changing a few files of a big tree (a pipeline's datum step, on every run of a watch)
        then does not re-encode the whole tree. This tree encodes afresh if asked again.
        """
        new = {e.path: e for e in entries}
        gone = {*new}
        for path in drop:
            gone.update(self._paths_under(path + "/"))
            gone.add(path)
        files = {path: e for path, e in self.files.items() if path not in gone}
        files.update(new)
        out = Manifest()
        out.files = {path: files[path] for path in sorted(files)}  # sorting strings, not entries
        if self._total_bytes is not None:
            removed = sum(self.files[path].size for path in gone if path in self.files)
            out._total_bytes = self._total_bytes - removed + sum(e.size for e in new.values())
        rows, self._rows = self._rows, {}
        for path in gone:
            rows.pop(path, None)
        out._rows = rows
        return out

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[FileEntry]:
        return iter(self.files.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and self.files == other.files

    def __hash__(self) -> int:
        return hash(tuple(self.files))

    @property
    def total_bytes(self) -> int:
        """Sum of the files' sizes."""
        if self._total_bytes is None:
            self._total_bytes = sum(e.size for e in self.files.values())
        return self._total_bytes

    def get(self, path: str) -> FileEntry | None:
        """The entry at exactly `path`."""
        return self.files.get(path)

    def under(self, prefix: str) -> list[FileEntry]:
        """Entries inside folder `prefix` ("" for all), or the single file `prefix`."""
        if not prefix:
            return list(self.files.values())
        if prefix in self.files:
            return [self.files[prefix]]
        return [self.files[p] for p in self._paths_under(prefix + "/")]

    def is_dir(self, path: str) -> bool:
        """Whether some file lives below `path`."""
        return next(self._paths_under(path + "/"), None) is not None

    def _paths_under(self, start: str) -> Iterator[str]:
        """The paths that begin with `start`: a binary search in the sorted paths, so asking for
        each of N datums' folders costs N log N rather than N squared."""
        if self._sorted is None:
            self._sorted = list(self.files)  # built sorted
        paths = self._sorted
        for i in range(bisect.bisect_left(paths, start), len(paths)):
            if not paths[i].startswith(start):
                return
            yield paths[i]

    def encode(self) -> bytes:
        """Canonical bytes (the same tree always gives the same bytes, hence the same key):
        `json.dumps({"files": rows, "format": FORMAT}, separators=(",", ":"))`, a row at a time."""
        rows = self._rows
        for path, e in self.files.items():
            if path not in rows:
                rows[path] = _ROW.encode([e.path, e.key, e.size, e.chunks, e.executable, e.rows])
        return f'{{"files":[{",".join([rows[p] for p in self.files])}],"format":"{FORMAT}"}}'.encode()

    @classmethod
    def decode(cls, blob: bytes, key: str) -> Manifest:
        """Parse manifest bytes, dispatching on the format id."""
        try:
            doc = json.loads(blob)
            if doc.get("format") != FORMAT:
                raise IntegrityError(
                    f"manifest {key} has format {doc.get('format')!r}; upgrade threadline", key=key
                )
            return cls(FileEntry(p, k, s, c, bool(x), r) for p, k, s, c, x, r in doc["files"])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise IntegrityError(f"manifest {key} is malformed: {exc}", key=key) from exc
