"""Moving whole files in and out of the content store, using every core.

Committing: the calling thread reads each file in large windows and cuts content-defined chunk
boundaries (FastCDC releases the GIL while it scans); worker threads hash the chunks, ask the
pack index which are new and compress only those (BLAKE3 and zstd release the GIL too); the
calling thread appends new chunks to the pack in order. Small files are batched so that a tree
of thousands of files costs a few syscalls per file and no per-file task.

Checking out: workers read contiguous runs of each pack, decompress, verify every chunk's hash
and write it at its offset (pwrite), then each file is renamed into place whole.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import pyfastcdc

from threadline.storage import codec
from threadline.storage.cas import (
    ContentStore,
    ContentWriter,
    StoredFile,
    encode_chunk_list,
    hash_bytes,
)
from threadline.storage.local import storage_error
from threadline.storage.memory import tune_allocator

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

#: content-defined chunk sizes; changing them changes chunk boundaries (never correctness)
AVG_CHUNK = 128 << 10
MIN_CHUNK = 32 << 10
MAX_CHUNK = 512 << 10
WINDOW = 8 << 20
SMALL_FILE = 1 << 20
BATCH_BYTES = 8 << 20
EMPTY_KEY = hash_bytes(b"")


def make_chunker() -> pyfastcdc.FastCDC:
    """The chunker every writer uses, so identical content cuts identically everywhere."""
    return pyfastcdc.FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)


#: per-chunk line counting: not wanted, wanted, wanted and this is the file's last chunk
NO_LINES, LINES, LINES_LAST = 0, 1, 2
_local = threading.local()

#: (file index, buffer, offset, length, line flag)
_Chunk = tuple[int, "bytes | bytearray", int, int, int]
#: (file index, key, length, codec, payload if new else None, lines)
_Result = list[tuple[int, bytes, int, int, "bytes | None", int]]


def _chunker() -> pyfastcdc.FastCDC:
    chunker = getattr(_local, "chunker", None)
    if chunker is None:  # FastCDC objects must not be shared between threads
        chunker = _local.chunker = make_chunker()
    return chunker


def _cut(data: bytes | bytearray) -> list[tuple[int, int]]:
    return [(c.offset, c.length) for c in _chunker().cut_buf(data)]


def _hash_and_pack(writer: ContentWriter, chunks: list[_Chunk]) -> _Result:
    """Hash chunks, ask the index which are new, compress only those, count lines if asked."""
    keys = [hash_bytes(memoryview(buf)[o : o + n]) for _, buf, o, n, _ in chunks]
    written = writer.pack.written
    known = [True] * len(keys) if writer.dry_run else writer.store.packs.contains(keys).tolist()
    out: _Result = []
    for (idx, buf, o, n, flag), key, hit in zip(chunks, keys, known):
        codec_id, payload = 0, None
        if not hit and key not in written:
            codec_id, payload = codec.compress(memoryview(buf)[o : o + n])
        lines = 0
        if flag:
            lines = buf.count(b"\n", o, o + n)
            if flag == LINES_LAST and n and buf[o + n - 1] != 10:
                lines += 1  # a last line without a terminating newline still counts
        out.append((idx, key, n, codec_id, payload, lines))
    return out


def _read_small(writer: ContentWriter, files: list[tuple[int, str | Path, bool]]) -> _Result:
    """Read, cut and store a batch of small files (reads run in parallel with other batches)."""
    chunks: list[_Chunk] = []
    for idx, path, count in files:
        try:
            with open(path, "rb", buffering=0) as fh:
                data = fh.read()
        except OSError as exc:
            raise storage_error(exc, path, "read") from exc
        cuts = _cut(data) or [(0, 0)]
        flags = [LINES if count else NO_LINES] * len(cuts)
        if count:
            flags[-1] = LINES_LAST
        chunks.extend((idx, data, o, n, f) for (o, n), f in zip(cuts, flags))
    return _hash_and_pack(writer, chunks)



class _Inline(Executor):
    """Runs each submitted call at once in the calling thread: for work too small to repay
    starting a thread pool (a handful of small files, as in an incremental pipeline step)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - delivered through the future, as a pool would
            future.set_exception(exc)
        return future


#: at most this many files, under one batch of bytes, are stored or restored without a pool
INLINE_FILES = 32


def _pool(workers: int, files: int, total_bytes: int | None, prefix: str) -> Executor:
    """A thread pool, or the calling thread for a few small files (a pool's threads overlap
    the opens and writes of many files, which cost more than starting them)."""
    if files <= INLINE_FILES and total_bytes is not None and total_bytes < BATCH_BYTES:
        return _Inline()
    return ThreadPoolExecutor(workers, thread_name_prefix=prefix)

def store_files(
    writer: ContentWriter,
    paths: Sequence[str | Path],
    *,
    count_lines: Callable[[int], bool] = lambda _i: False,
    progress: Callable[[int], None] | None = None,
    sizes: Sequence[int] | None = None,
) -> list[StoredFile]:
    """Store files' contents through `writer`; return one StoredFile per path, in order.

    Args:
        writer: the batch the new chunks go into.
        paths: regular files to read.
        count_lines: called with a file's index; True to count its lines (row counts of CSV).
        progress: called with the number of bytes just processed.
        sizes: the files' sizes if the caller has stat'ed them already (a hint: a file that
            changed size since is still stored whole).
    """
    tune_allocator()
    store = writer.store
    chunks: list[list[tuple[bytes, int]]] = [[] for _ in paths]
    lines = [0] * len(paths)
    pending: deque[Future[_Result]] = deque()

    def drain(limit: int) -> None:
        while len(pending) > limit:
            for idx, key, n, codec_id, payload, count in pending.popleft().result():
                if payload is not None:
                    writer.pack.add(key, n, codec_id, payload)
                chunks[idx].append((key, n))
                lines[idx] += count
                if progress:
                    progress(n)

    with _pool(store.workers, len(paths), sum(sizes) if sizes is not None else None, "tl-store") as pool:

        def submit(fn: Callable[..., _Result], arg: object) -> None:
            pending.append(pool.submit(fn, writer, arg))
            drain(store.workers * 2)

        small: list[tuple[int, str | Path, bool]] = []
        small_bytes = 0
        for idx, path in enumerate(paths):
            count = count_lines(idx)
            try:
                size = sizes[idx] if sizes is not None else os.stat(path).st_size
                if size <= SMALL_FILE:
                    small.append((idx, path, count))
                    small_bytes += size
                    if small_bytes >= BATCH_BYTES or len(small) >= 256:
                        submit(_read_small, small)
                        small, small_bytes = [], 0
                    continue
                with open(path, "rb", buffering=0) as fh:
                    _stream_large(fh, idx, count, lambda c: submit(_hash_and_pack, c))
            except OSError as exc:
                raise storage_error(exc, path, "read") from exc
        if small:
            submit(_read_small, small)
        drain(0)

    results: list[StoredFile] = []
    for idx, file_chunks in enumerate(chunks):
        size = sum(n for _, n in file_chunks)
        counted = lines[idx] if count_lines(idx) else None
        if len(file_chunks) == 1:
            results.append(StoredFile(file_chunks[0][0].hex(), size, 1, counted))
        else:
            key = writer.put_blob(encode_chunk_list(file_chunks))
            results.append(StoredFile(key, size, len(file_chunks), counted))
    return results


def _stream_large(
    fh: BinaryIO, idx: int, count: bool, submit: Callable[[list[_Chunk]], None]
) -> None:
    """Cut a large file window by window; the possibly-truncated last chunk carries over."""
    carry = b""
    flag = LINES if count else NO_LINES
    while True:
        buf = bytearray(len(carry) + WINDOW)
        buf[: len(carry)] = carry
        got = fh.readinto(memoryview(buf)[len(carry) :])  # type: ignore[attr-defined]
        eof = not got
        del buf[len(carry) + (got or 0) :]
        if not buf:
            return
        cuts = _cut(buf)
        if not eof and len(cuts) > 1:
            last_o, _ = cuts.pop()
            carry = bytes(buf[last_o:])
        elif not eof:  # one chunk spans the window: keep reading before cutting
            carry = bytes(buf)
            continue
        batch: list[_Chunk] = [(idx, buf, o, n, flag) for o, n in cuts]
        if eof and count:
            batch[-1] = (*batch[-1][:4], LINES_LAST)
        submit(batch)
        if eof:
            return


@dataclass
class _Target:
    """A file being restored: where it goes and its temp name while being written."""

    dest: Path
    tmp: Path
    mode: int
    size: int
    fd: int = -1
    remaining: int = 0


def _write_chunks(
    store: ContentStore,
    work: list[tuple[_Target, int, bytes, int]],
) -> int:
    data = store.read_many([key for _, _, key, _ in work])
    written = 0
    for i, (target, offset, _key, _n) in enumerate(work):
        chunk = data[i]
        if target.fd >= 0:
            os.pwrite(target.fd, chunk, offset)
        else:  # small file, written whole by this worker
            with open(target.tmp, "wb") as fh:
                fh.write(chunk)
            os.chmod(target.tmp, target.mode)
            os.replace(target.tmp, target.dest)
        written += len(chunk)
    return written


def restore_files(
    store: ContentStore,
    items: Sequence[tuple[StoredFile, Path, int]],
    *,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write stored files to local paths (parents must exist), each replaced atomically.

    Args:
        store: where the content is.
        items: (stored file, destination path, permission bits).
        progress: called with the number of bytes just written.
    """
    tune_allocator()
    pending: deque[tuple[Future[int], list[_Target]]] = deque()

    def finish_targets(targets: list[_Target]) -> None:
        for t in targets:
            t.remaining -= 1
            if t.remaining == 0 and t.fd >= 0:
                os.close(t.fd)
                t.fd = -1
                os.chmod(t.tmp, t.mode)
                os.replace(t.tmp, t.dest)

    def drain(limit: int) -> None:
        while len(pending) > limit:
            future, targets = pending.popleft()
            done = future.result()
            finish_targets(targets)
            if progress:
                progress(done)

    opened: list[_Target] = []
    try:
        with _pool(store.workers, len(items), sum(stored.size for stored, _, _ in items),
                   "tl-restore") as pool:
            batch: list[tuple[_Target, int, bytes, int]] = []
            batch_bytes = 0

            def submit() -> None:
                nonlocal batch, batch_bytes
                pending.append((pool.submit(_write_chunks, store, batch), [w[0] for w in batch]))
                batch, batch_bytes = [], 0
                drain(store.workers * 2)

            for stored, dest, mode in items:
                tmp = dest.parent / f".{dest.name[:100]}.{secrets.token_hex(4)}.tl-tmp"
                target = _Target(dest, tmp, mode, stored.size)
                if stored.chunks == 1 and stored.key == EMPTY_KEY.hex():
                    tmp.write_bytes(b"")
                    os.chmod(tmp, mode)
                    os.replace(tmp, dest)
                    continue
                chunk_list = store.chunk_list(stored)
                if len(chunk_list) > 1:
                    target.fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    opened.append(target)
                    os.ftruncate(target.fd, stored.size)
                target.remaining = len(chunk_list)
                offset = 0
                for key, n in chunk_list:
                    batch.append((target, offset, key, n))
                    offset += n
                    batch_bytes += n
                    if batch_bytes >= BATCH_BYTES:
                        submit()
            if batch:
                submit()
            drain(0)
    except OSError as exc:
        raise storage_error(exc, getattr(exc, "filename", None) or "checkout target", "write") from exc
    finally:
        for t in opened:
            if t.fd >= 0:
                os.close(t.fd)
                t.tmp.unlink(missing_ok=True)

