#!/usr/bin/env python3
"""Benchmark: Threadline's versioned data repo against DVC 3.67, both in the same run.

Two scenarios, each run for both tools in fresh folders on every repeat:

A. one large CSV (default 1 GiB): first commit, commit after a 1% edit in the middle,
   commit after appending 1% rows, re-commit with nothing changed, checkout of the first
   version, and the peak memory of the commit processes;
B. a tree of many small files (default 20,000, ~553 MB): first commit, status with nothing
   changed, commit after changing 1% of the files, checkout of the first version.

For each step it reports the median wall time of each tool, the ratio dvc_time /
threadline_time, how much each tool's object store grew (`.threadline/objects/` and
`.dvc/cache/`, apparent bytes), and pass/fail against Threadline's targets.

The page cache is not dropped (that needs root): every run is warm-cache. The input data is
read once just before each timed step by the copy that places it in the workspace, so both
tools start equally warm; `sync` runs before each timed step so that one tool's pending
writeback is not charged to the other; the tool that goes first alternates per repeat.

Usage:
    python benchmarks/data_repo_vs_dvc.py                  # full run (several minutes)
    python benchmarks/data_repo_vs_dvc.py --quick          # smoke run (64 MiB, 2,000 files)
    python benchmarks/data_repo_vs_dvc.py --markdown out.md --json out.json
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from proctree import descendants  # benchmarks/ is on the path: the script's own folder

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = Path("/tmp/tlbench")
SEED = 20240101
GEN_VERSION = 2  # bump when the generated data changes, so cached copies are regenerated
MB = 1_000_000
GB = 1_000_000_000
EDIT_FRACTION = 0.01

# --------------------------------------------------------------------------------------
# Sizes and small formatting helpers
# --------------------------------------------------------------------------------------

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": MB,
    "mb": MB,
    "g": GB,
    "gb": GB,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "ki": 1 << 10,
    "mi": 1 << 20,
    "gi": 1 << 30,
}


def parse_size(text: str) -> int:
    """Parse '64MiB', '1GiB', '500MB' or '1048576' into bytes (for --csv-size)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use e.g. 64MiB, 1GiB, 500MB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def human_bytes(n: float) -> str:
    """Binary-unit size for data set descriptions (the CSV size is chosen in MiB/GiB)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def fmt_seconds(s: float) -> str:
    """Seconds with precision that suits their size."""
    return f"{s:.3f} s" if s < 1 else f"{s:.2f} s"


# --------------------------------------------------------------------------------------
# Deterministic data generation (numpy values, formatted by Arrow's C++ CSV writer)
# --------------------------------------------------------------------------------------

CSV_HEADER = b"id,ts,user_id,amount,score,qty,category,country,comment\n"
CSV_CHUNK_ROWS = 250_000
_WORDS_TEXT = (
    "order item box refund shipped pending late early damaged fine great poor ok return "
    "customer fast slow again never always gift priority address changed missing label "
    "warehouse courier cancelled express standard partial delayed resent invoice paid"
)
_CATEGORIES = [
    "electronics",
    "grocery",
    "toys",
    "books",
    "garden",
    "sports",
    "fashion",
    "beauty",
    "automotive",
    "home",
    "office",
    "pets",
]
_COUNTRIES = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "ES", "IT", "NL", "SE", "PL", "MX"]


class _Vocab:
    """Arrow string arrays that rows draw from by index (built once, deterministic)."""

    _cache: tuple[Any, Any, Any] | None = None

    @classmethod
    def arrays(cls) -> tuple[Any, Any, Any]:
        """Phrases, categories and country codes as Arrow arrays."""
        if cls._cache is None:
            import pyarrow as pa

            rng = np.random.default_rng(SEED)
            phrases = [
                " ".join(rng.choice(_WORDS_TEXT.split(), size=int(rng.integers(2, 8))))
                for _ in range(8192)
            ]
            cls._cache = (pa.array(phrases), pa.array(_CATEGORIES), pa.array(_COUNTRIES))
        return cls._cache


def csv_rows(start: int, n: int, seed: int) -> bytes:
    """CSV text (no header) of rows start..start+n-1; same arguments give the same bytes.

    Each call seeds its own generator with (seed, start), so any range of rows can be
    regenerated independently (that is how the edit and append variants are made) and
    chunks can be produced in parallel threads.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    phrases, categories, countries = _Vocab.arrays()
    rng = np.random.default_rng([seed, start])
    row = np.arange(start, start + n, dtype=np.int64)
    ts = (np.int64(1_704_067_200) + row * 3 + rng.integers(0, 3, n)).astype("datetime64[s]")
    table = pa.table(
        {
            "id": row + 1,
            "ts": pa.array(ts),
            "user_id": rng.integers(1, 1_000_000, n),
            "amount": np.round(rng.lognormal(3.0, 1.0, n), 2),
            "score": rng.random(n),
            "qty": rng.integers(1, 20, n),
            "category": categories.take(rng.integers(0, len(categories), n)),
            "country": countries.take(rng.integers(0, len(countries), n)),
            "comment": phrases.take(rng.integers(0, len(phrases), n)),
        }
    )
    sink = pa.BufferOutputStream()
    pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False))
    return bytes(sink.getvalue())


def _filler_row(row: int, pad: int) -> bytes:
    """A valid last row whose comment is padded so the file has an exact byte size."""
    return f'{row + 1},2024-01-01 00:00:00,0,0.0,0.0,0,"home","US","{"x" * pad}"\n'.encode()


def write_csv(path: Path, target: int, seed: int) -> int:
    """Write a CSV of exactly `target` bytes; return its number of data rows.

    Chunks are generated a few at a time in threads (Arrow and numpy release the GIL);
    the last chunk is cut at a row boundary and one filler row makes up the exact size.
    """
    min_filler = len(_filler_row(10**12, 0))  # an upper bound: the id's width varies
    if target < len(CSV_HEADER) + min_filler + 1024:
        raise ValueError(f"CSV size {target} is too small; use at least 1 MiB")
    workers = max(1, min(4, os.cpu_count() or 1))
    written, rows = len(CSV_HEADER), 0
    with path.open("wb") as out, ThreadPoolExecutor(workers) as pool:
        out.write(CSV_HEADER)
        while True:
            starts = [rows + i * CSV_CHUNK_ROWS for i in range(workers)]
            for buf in pool.map(lambda s: csv_rows(s, CSV_CHUNK_ROWS, seed), starts):
                if written + len(buf) <= target - min_filler:
                    out.write(buf)
                    written, rows = written + len(buf), rows + CSV_CHUNK_ROWS
                    continue
                ends = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10) + 1
                keep = int(np.searchsorted(ends, target - min_filler - written, side="right"))
                cut = int(ends[keep - 1]) if keep else 0
                out.write(buf[:cut])
                written, rows = written + cut, rows + keep
                out.write(_filler_row(rows, target - written - len(_filler_row(rows, 0))))
                return rows + 1


def line_starts(path: Path, lines: Sequence[int]) -> list[int]:
    """Byte offsets at which the given 0-based line numbers (>= 1) start, in one scan."""
    wanted = sorted(set(lines))
    found: dict[int, int] = {}
    seen = base = 0
    with path.open("rb") as f:
        while len(found) < len(wanted):
            block = f.read(1 << 26)
            if not block:
                raise ValueError(f"{path} has fewer lines than {wanted[-1]}")
            newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
            for line in wanted:
                if line not in found and seen < line <= seen + len(newlines):
                    found[line] = base + int(newlines[line - seen - 1]) + 1
            seen, base = seen + len(newlines), base + len(block)
    return [found[line] for line in lines]


def _copy_range(src: Any, dst: Any, start: int, length: int | None) -> None:
    """Copy `length` bytes (None: to the end) of file object src from `start` into dst."""
    src.seek(start)
    while length is None or length > 0:
        block = src.read(1 << 24 if length is None else min(1 << 24, length))
        if not block:
            break
        dst.write(block)
        if length is not None:
            length -= len(block)


@dataclass
class CsvDataset:
    """The three versions of the big CSV used by scenario A, cached under the workdir."""

    original: Path
    edited: Path
    appended: Path
    size: int
    rows: int
    edit_first_row: int
    edit_rows: int
    append_rows: int


def _derive_csv_variants(ds: CsvDataset, seed: int) -> None:
    """Write the 1%-edited-in-the-middle and the 1%-appended versions of the original.

    The edit rewrites every value (except the id) of a contiguous block of rows centred on
    the middle of the file; the row count stays the same, the byte length may vary a little.
    """
    header_lines = 1
    first, last = line_starts(
        ds.original,
        [header_lines + ds.edit_first_row, header_lines + ds.edit_first_row + ds.edit_rows],
    )
    with ds.original.open("rb") as src, ds.edited.open("wb") as dst:
        _copy_range(src, dst, 0, first)
        dst.write(csv_rows(ds.edit_first_row, ds.edit_rows, seed + 1))
        _copy_range(src, dst, last, None)
    with ds.original.open("rb") as src, ds.appended.open("wb") as dst:
        _copy_range(src, dst, 0, None)
        dst.write(csv_rows(ds.rows, ds.append_rows, seed))


def ensure_csv_dataset(workdir: Path, size: int) -> CsvDataset:
    """Generate (or reuse from an earlier run) the CSV versions for scenario A.

    meta.json is written last and records the row counts and the three file sizes; the
    cached files are reused only if it exists and every size still matches.
    """
    folder = workdir / "data" / f"csv-{size}-v{GEN_VERSION}"
    meta_path = folder / "meta.json"
    paths = (folder / "big.csv", folder / "big-edit.csv", folder / "big-append.csv")
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if all(p.exists() and p.stat().st_size == n for p, n in zip(paths, meta["sizes"])):
            print(f"reusing cached CSV {paths[0]} ({human_bytes(size)})")
            return CsvDataset(*paths, size, *meta["rows"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    rows = write_csv(paths[0], size, SEED)
    k = max(1, round(rows * EDIT_FRACTION))
    ds = CsvDataset(*paths, size, rows, rows // 2 - k // 2, k, k)
    _derive_csv_variants(ds, SEED)
    meta = {
        "sizes": [p.stat().st_size for p in paths],
        "rows": [ds.rows, ds.edit_first_row, ds.edit_rows, ds.append_rows],
    }
    meta_path.write_text(json.dumps(meta))
    print(
        f"generated CSV {paths[0]} ({human_bytes(size)}, {rows:,} rows) and its variants "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return ds


class _CsvStream:
    """An endless stream of unique CSV text, handed out in slices (small text files)."""

    def __init__(self, seed: int) -> None:
        self._seed, self._row, self._buf = seed, 0, b""

    def take(self, n: int) -> bytes:
        """The next n bytes of the stream."""
        while len(self._buf) < n:
            self._buf += csv_rows(self._row, 50_000, self._seed)
            self._row += 50_000
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


@dataclass
class FileTree:
    """The small-file tree used by scenario B, cached under the workdir."""

    root: Path
    files: int
    total_bytes: int


AVG_SMALL_FILE = 27_650  # 20,000 files -> 553 MB


def _tree_path(i: int, text: bool) -> str:
    """Relative path of file i: 1,000 files per top folder, 100 per sub-folder."""
    return f"d{i // 1000:02d}/s{(i // 100) % 10}/f{i:05d}.{'csv' if text else 'bin'}"


def ensure_file_tree(workdir: Path, nfiles: int) -> FileTree:
    """Generate (or reuse) `nfiles` files of varied sizes around 27 KB.

    Sizes are log-normal (median ~20 KB, clipped to 512 B..512 KB) scaled so the total is
    nfiles * 27,650 bytes; 60% are CSV text (unique rows), 40% random bytes (like images).
    No two files share content, so whole-file stores are not at a disadvantage.
    """
    folder = workdir / "data" / f"files-{nfiles}-v{GEN_VERSION}"
    meta_path, root = folder / "meta.json", folder / "tree"
    if meta_path.exists():
        tree = FileTree(root, **json.loads(meta_path.read_text()))
        print(f"reusing cached file tree {root} ({tree.files:,} files)")
        return tree
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng([SEED, nfiles])
    sizes = np.clip(rng.lognormal(np.log(20_000), 0.8, nfiles), 512, 512 * 1024)
    sizes = np.maximum(1, np.round(sizes * (nfiles * AVG_SMALL_FILE / sizes.sum()))).astype(int)
    sizes[-1] += nfiles * AVG_SMALL_FILE - int(sizes.sum())
    is_text = rng.random(nfiles) < 0.6
    text = _CsvStream(SEED + 7)
    for i, (size, txt) in enumerate(zip(sizes.tolist(), is_text.tolist(), strict=True)):
        path = root / _tree_path(i, txt)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.take(size) if txt else rng.bytes(size))
    tree = FileTree(root, nfiles, int(sizes.sum()))
    meta_path.write_text(json.dumps({"files": tree.files, "total_bytes": tree.total_bytes}))
    print(
        f"generated {nfiles:,} files ({human_bytes(tree.total_bytes)}) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return tree


def mutate_tree(root: Path, fraction: float, seed: int) -> int:
    """Rewrite a deterministic `fraction` of the files under root with new bytes, same sizes."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    rng = np.random.default_rng(seed)
    k = max(1, round(len(files) * fraction))
    for idx in sorted(rng.choice(len(files), size=k, replace=False).tolist()):
        path = files[idx]
        size = path.stat().st_size
        path.unlink()  # never write through a link into a tool's cache
        path.write_bytes(rng.bytes(size))
    return k


def tree_difference(expected: Path, actual: Path) -> str | None:
    """None if both trees hold the same relative files with the same bytes, else why not."""

    def listing(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}

    want, got = listing(expected), listing(actual)
    if want != got:
        return (
            f"file sets differ: {len(want - got)} missing, {len(got - want)} extra "
            f"(e.g. {sorted(want ^ got)[:3]})"
        )
    for rel in sorted(want):
        if not filecmp.cmp(expected / rel, actual / rel, shallow=False):
            return f"content differs: {rel}"
    return None


def folder_bytes(path: Path) -> int:
    """Apparent size in bytes of all regular files under path (0 if it does not exist)."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def _force_unlink(_func: Any, path: str, _exc: Any) -> None:
    """rmtree error handler: make the entry writable and try again (DVC's cache is 0444)."""
    os.chmod(path, 0o700)
    if os.path.isdir(path):
        shutil.rmtree(path, onerror=_force_unlink)
    else:
        os.unlink(path)


def remove(path: Path) -> None:
    """Delete a file or folder tree if it exists (cache files may be read-only)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=_force_unlink)
    elif path.exists() or path.is_symlink():
        path.unlink()


# --------------------------------------------------------------------------------------
# Running commands: wall time, peak memory, captured output
# --------------------------------------------------------------------------------------


class CommandFailed(Exception):
    """A tool command exited non-zero; carries what is needed to report it."""

    def __init__(self, cmd: Sequence[str], cwd: Path, rc: int, stdout: str, stderr: str) -> None:
        self.cmd, self.cwd, self.rc, self.stdout, self.stderr = list(cmd), cwd, rc, stdout, stderr
        super().__init__(self.describe())

    def describe(self) -> str:
        """The command, where it ran, its exit code and the tail of its output."""
        tail = (self.stderr.strip() or self.stdout.strip())[-1500:]
        return f"`{' '.join(self.cmd)}` (in {self.cwd}) exited {self.rc}:\n{tail}"


@dataclass
class Measured:
    """One timed command: wall seconds, peak resident memory (bytes) and its output."""

    seconds: float
    peak_rss: int
    stdout: str


def _proc_tree_rss(root_pid: int) -> int:
    """Sum of VmRSS over root_pid and all its descendants, read from /proc."""
    total = 0
    for pid in descendants(root_pid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class _TreeRssSampler(threading.Thread):
    """Samples the summed RSS of a process tree, so worker pools are counted together.

    `wait4` alone reports the largest single process of the tree; a tool that hashes in
    several worker processes would look smaller than it is. The peak reported is the
    larger of the two.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Sample until stopped."""
        while not self._stop_event.wait(self.interval):
            self.peak = max(self.peak, _proc_tree_rss(self.pid))

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop_event.set()
        self.join()


TIME_BIN = shutil.which("time", path="/usr/bin:/bin")


def run_measured(cmd: Sequence[str], cwd: Path, env: Mapping[str, str]) -> Measured:
    """Run cmd, timing it with perf_counter and measuring its peak RSS; raise on failure.

    Peak RSS comes from GNU time's %M (the tool's own maximum, including waited-for
    children) and from sampling the whole process tree. We do not use our own
    wait4/getrusage: Linux folds the pre-exec memory of the forked child -- a copy of
    this (large) benchmark process -- into the child's ru_maxrss, which would inflate it.
    """
    with tempfile.TemporaryDirectory(prefix="tlbench-") as tmp:
        rss_file = Path(tmp, "rss")
        full = [TIME_BIN, "-f", "%M", "-o", str(rss_file), *cmd] if TIME_BIN else list(cmd)
        with Path(tmp, "out").open("w+b") as out, Path(tmp, "err").open("w+b") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                full, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
            sampler = _TreeRssSampler(proc.pid)
            sampler.start()
            rc = proc.wait()
            seconds = time.perf_counter() - t0
            sampler.stop()
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        lines = rss_file.read_text().split() if rss_file.exists() else []
        time_rss = int(lines[-1]) * 1024 if lines and lines[-1].isdigit() else 0
    if rc != 0:
        raise CommandFailed(cmd, cwd, rc, stdout, stderr)
    return Measured(seconds, max(time_rss, sampler.peak), stdout)


def run_quiet(cmd: Sequence[str], cwd: Path, env: Mapping[str, str]) -> str:
    """Run an untimed helper command; return stdout, raise CommandFailed on failure."""
    proc = subprocess.run(
        list(cmd),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise CommandFailed(cmd, cwd, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def child_env() -> dict[str, str]:
    """Environment for the tools: no analytics, a fixed git identity, no THREADLINE_* leaks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    env.update(
        {
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@localhost",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@localhost",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
        }
    )
    return env


# --------------------------------------------------------------------------------------
# The two tools behind one small interface: a workspace that versions one path
# --------------------------------------------------------------------------------------


class Workspace(ABC):
    """A fresh folder in which one tool versions one path (`target`: a file or a folder)."""

    name: str = ""

    def __init__(self, exe: Path, run_dir: Path, target: str, env: Mapping[str, str]) -> None:
        self.exe, self.run_dir, self.target, self.env = exe, run_dir, target, env
        self.ws = run_dir / "ws"
        self.ws.mkdir(parents=True)

    @abstractmethod
    def setup(self) -> None:
        """Initialise the tool's repository in the workspace (untimed)."""

    @abstractmethod
    def commit(self, message: str) -> tuple[Measured, str]:
        """Timed: record the current content of target; return the timing and a version id."""

    @abstractmethod
    def status(self) -> Measured:
        """Timed: ask what committing target would change."""

    @abstractmethod
    def checkout(self, version: str) -> tuple[Measured, Path]:
        """Timed: materialise `version` of target; return the timing and where it landed."""

    @abstractmethod
    def store_bytes(self) -> int:
        """Current size of the tool's object store."""

    def info(self) -> dict[str, Any]:
        """Optional extra facts to record at the end of a scenario."""
        return {}


class DvcWorkspace(Workspace):
    """DVC in a git repo; `dvc add` is the commit, git records which .dvc file is which version.

    The cache type is forced to `copy` so that checkout really writes the bytes (as
    Threadline does) instead of linking to the cache; on ext4 that is DVC's default anyway.
    The site cache (DVC's index) goes into the run folder so nothing piles up in /var/tmp.
    """

    name = "dvc"

    def _dvc(self, *args: str) -> list[str]:
        return [str(self.exe), *args]

    def setup(self) -> None:
        """git init + dvc init, analytics and update checks off, copy cache type."""
        run_quiet(["git", "init", "-q"], self.ws, self.env)
        run_quiet(self._dvc("init", "-q"), self.ws, self.env)
        for key, value in (
            ("core.analytics", "false"),
            ("core.check_update", "false"),
            ("core.site_cache_dir", str(self.run_dir / "dvc-site-cache")),
            ("cache.type", "copy"),
        ):
            run_quiet(self._dvc("config", key, value), self.ws, self.env)
        run_quiet(["git", "add", "-A"], self.ws, self.env)
        run_quiet(["git", "commit", "-qm", "init"], self.ws, self.env)

    def commit(self, message: str) -> tuple[Measured, str]:
        """Timed `dvc add target`; then (untimed) the git commit of the .dvc file."""
        measured = run_measured(self._dvc("add", self.target), self.ws, self.env)
        run_quiet(["git", "add", f"{self.target}.dvc", ".gitignore"], self.ws, self.env)
        run_quiet(["git", "commit", "-q", "--allow-empty", "-m", message], self.ws, self.env)
        return measured, run_quiet(["git", "rev-parse", "HEAD"], self.ws, self.env).strip()

    def status(self) -> Measured:
        """Timed `dvc status`."""
        return run_measured(self._dvc("status"), self.ws, self.env)

    def checkout(self, version: str) -> tuple[Measured, Path]:
        """git-checkout the old .dvc file, delete the workspace copy, time `dvc checkout`."""
        run_quiet(["git", "checkout", version, "--", f"{self.target}.dvc"], self.ws, self.env)
        remove(self.ws / self.target)
        measured = run_measured(self._dvc("checkout", f"{self.target}.dvc"), self.ws, self.env)
        return measured, self.ws / self.target

    def store_bytes(self) -> int:
        """Size of .dvc/cache."""
        return folder_bytes(self.ws / ".dvc" / "cache")


_COMMIT_ID = re.compile(r"\b[0-9a-f]{7,64}\b")


class ThreadlineWorkspace(Workspace):
    """A Threadline home (`threadline init`) with one data repo named after the target."""

    name = "threadline"

    @property
    def repo(self) -> str:
        """Data repo name: 'big' for big.csv, 'data' for the data folder."""
        return Path(self.target).stem

    def _tl(self, *args: str) -> list[str]:
        return [str(self.exe), *args]

    def setup(self) -> None:
        """threadline init + data create."""
        run_quiet(self._tl("init"), self.ws, self.env)
        run_quiet(self._tl("data", "create", self.repo), self.ws, self.env)

    def commit(self, message: str) -> tuple[Measured, str]:
        """Timed `threadline data commit REPO TARGET -m MSG`; the id is parsed from stdout."""
        cmd = self._tl("data", "commit", self.repo, self.target, "-m", message)
        measured = run_measured(cmd, self.ws, self.env)
        ids = _COMMIT_ID.findall(measured.stdout)
        if not ids:
            raise CommandFailed(cmd, self.ws, 0, measured.stdout, "no commit id in stdout")
        return measured, max(ids, key=len)

    def status(self) -> Measured:
        """Timed `threadline data status REPO@main TARGET`."""
        cmd = self._tl("data", "status", f"{self.repo}@main", self.target)
        return run_measured(cmd, self.ws, self.env)

    def checkout(self, version: str) -> tuple[Measured, Path]:
        """Timed `threadline data checkout REPO@ID DEST` into a new folder beside the ws."""
        dest = self.run_dir / "checkout"
        cmd = self._tl("data", "checkout", f"{self.repo}@{version}", str(dest))
        return run_measured(cmd, self.ws, self.env), dest

    def store_bytes(self) -> int:
        """Size of .threadline/objects."""
        return folder_bytes(self.ws / ".threadline" / "objects")

    def info(self) -> dict[str, Any]:
        """`threadline data du REPO --json` (stored vs logical bytes), if it works."""
        try:
            out = run_quiet(self._tl("data", "du", self.repo, "--json"), self.ws, self.env)
            return {"du": json.loads(out)}
        except (CommandFailed, json.JSONDecodeError) as exc:
            return {"du_error": str(exc)}


# --------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------


@dataclass
class StepResult:
    """One timed step of one repeat: seconds, store growth in bytes, peak RSS in bytes."""

    seconds: float
    growth: int
    peak_rss: int


@dataclass
class Results:
    """Everything measured: step -> tool -> one StepResult per repeat, plus errors."""

    steps: dict[str, dict[str, list[StepResult]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    info: list[dict[str, Any]] = field(default_factory=list)

    def add(self, step: str, tool: str, result: StepResult) -> None:
        """Record one repeat of one step."""
        self.steps.setdefault(step, {}).setdefault(tool, []).append(result)

    def get(self, step: str, tool: str) -> list[StepResult]:
        """The repeats recorded for step and tool (empty if it failed or did not run)."""
        return self.steps.get(step, {}).get(tool, [])


def timed_step(
    ws: Workspace, results: Results, step: str, action: Callable[[], tuple[Measured, str]]
) -> str:
    """Run one timed action after a sync, recording time, store growth and memory."""
    os.sync()  # earlier untimed copies' writeback must not be charged to this step
    before = ws.store_bytes()
    measured, value = action()
    results.add(
        step, ws.name, StepResult(measured.seconds, ws.store_bytes() - before, measured.peak_rss)
    )
    print(f"  {ws.name:<10} {step}  {fmt_seconds(measured.seconds):>9}")
    return value


def place_file(src: Path, dest: Path) -> None:
    """Replace dest by a fresh copy of src (a new inode: never write into a tool's cache)."""
    remove(dest)
    shutil.copyfile(src, dest)


def scenario_csv(ws: Workspace, ds: CsvDataset, results: Results) -> None:
    """A: big CSV — first commit, 1% edit, 1% append, no-op re-commit, checkout of v1."""
    ws.setup()
    path = ws.ws / ws.target
    place_file(ds.original, path)
    v1 = timed_step(ws, results, "A1", lambda: ws.commit("original"))
    place_file(ds.edited, path)
    timed_step(ws, results, "A2", lambda: ws.commit("edit 1% in the middle"))
    place_file(ds.appended, path)
    timed_step(ws, results, "A3", lambda: ws.commit("append 1% rows"))
    timed_step(ws, results, "A4", lambda: ws.commit("nothing changed"))

    def checkout() -> tuple[Measured, str]:
        measured, where = ws.checkout(v1)
        landed = where / ws.target if where.is_dir() else where
        if where.is_dir() and not landed.exists():
            files = [p for p in where.rglob("*") if p.is_file()]
            landed = files[0] if len(files) == 1 else landed
        if not landed.is_file() or not filecmp.cmp(ds.original, landed, shallow=False):
            raise CommandFailed(
                [ws.name, "checkout", v1],
                ws.ws,
                0,
                "",
                f"checked-out {landed} does not equal {ds.original}",
            )
        return measured, ""

    timed_step(ws, results, "A5", checkout)
    results.info.append({"tool": ws.name, "scenario": "A", **ws.info()})


def scenario_files(ws: Workspace, tree: FileTree, results: Results) -> None:
    """B: small files — first commit, no-change status, 1% change + commit, checkout of v1."""
    ws.setup()
    shutil.copytree(tree.root, ws.ws / ws.target)
    v1 = timed_step(ws, results, "B1", lambda: ws.commit("original"))
    ws.status()  # warm-up: the step is defined as a warm status
    timed_step(ws, results, "B2", lambda: (ws.status(), ""))
    mutate_tree(ws.ws / ws.target, EDIT_FRACTION, SEED + 3)
    timed_step(ws, results, "B3", lambda: ws.commit("change 1% of files"))

    def checkout() -> tuple[Measured, str]:
        measured, where = ws.checkout(v1)
        if (where / ws.target).is_dir() and len(list(where.iterdir())) == 1:
            where = where / ws.target  # the tool kept the folder name; accept that too
        problem = tree_difference(tree.root, where)
        if problem:
            raise CommandFailed([ws.name, "checkout", v1], ws.ws, 0, "", problem)
        return measured, ""

    timed_step(ws, results, "B4", checkout)
    results.info.append({"tool": ws.name, "scenario": "B", **ws.info()})


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table."""

    step: str
    what: str
    threadline: str
    dvc: str
    ratio: str
    tl_growth: str
    dvc_growth: str
    target: str
    result: str


COLUMNS = (
    "Step",
    "What",
    "Threadline",
    "DVC",
    "DVC/TL",
    "TL store +",
    "DVC store +",
    "Target",
    "Result",
)


def _median(rs: list[StepResult], attr: str) -> float | None:
    return statistics.median(getattr(r, attr) for r in rs) if rs else None


def _growth(rs: list[StepResult], size: int) -> str:
    g = _median(rs, "growth")
    if g is None:
        return "—"
    return f"{g / MB:,.1f} MB ({100 * g / size:.1f}%)" if size else f"{g / MB:,.1f} MB"


def _verdict(checks: list[bool | None]) -> str:
    """PASS if every check passed, FAIL if one failed, n/a if one could not be evaluated."""
    if any(c is False for c in checks):
        return "FAIL"
    return "PASS" if all(c is True for c in checks) else "n/a"


def _cmp(value: float | None, ok: Callable[[float], bool]) -> bool | None:
    return None if value is None else ok(value)


def build_rows(
    results: Results, csv_size: int, tree: FileTree | None, tools: Sequence[str]
) -> list[Row]:
    """Turn medians into table rows with ratios and pass/fail against the targets."""
    rows: list[Row] = []

    def missing(tool: str) -> str:
        return "error" if tool in tools else "not run"

    def timing_row(
        step: str,
        what: str,
        size: int,
        target: str,
        checks: Callable[[float | None, float | None, float | None], list[bool | None]],
        rate: Callable[[float], str] | None = None,
    ) -> None:
        tl, dvc = results.get(step, "threadline"), results.get(step, "dvc")
        tl_s, dvc_s = _median(tl, "seconds"), _median(dvc, "seconds")
        if tl_s is None and dvc_s is None:
            return
        ratio = dvc_s / tl_s if tl_s and dvc_s is not None else None
        growth = _median(tl, "growth")

        def cell(s: float | None, tool: str) -> str:
            if s is None:
                return missing(tool)
            return fmt_seconds(s) + (f" · {rate(s)}" if rate else "")

        rows.append(
            Row(
                step,
                what,
                cell(tl_s, "threadline"),
                cell(dvc_s, "dvc"),
                "—" if ratio is None else f"{ratio:.2f}x",
                _growth(tl, size),
                _growth(dvc, size),
                target,
                _verdict(checks(tl_s, ratio, growth)),
            )
        )

    def rss_row(step: str, what: str, steps: list[str]) -> None:
        peaks = {
            t: max((r.peak_rss for s in steps for r in results.get(s, t)), default=None)
            for t in ("threadline", "dvc")
        }
        if peaks["threadline"] is None and peaks["dvc"] is None:
            return
        tl, dvc = peaks["threadline"], peaks["dvc"]
        rows.append(
            Row(
                step,
                what,
                missing("threadline") if tl is None else f"{tl / MB:,.0f} MB",
                missing("dvc") if dvc is None else f"{dvc / MB:,.0f} MB",
                "—",
                "—",
                "—",
                "TL < 300 MB",
                _verdict([_cmp(tl, lambda v: v < 300 * MB)]),
            )
        )

    def ge(x: float) -> Callable[[float], bool]:
        return lambda v: v >= x

    if results.steps.get("A1"):
        size, gib = csv_size, human_bytes(csv_size)

        def small_growth(tl_s: float | None, r: float | None, g: float | None) -> list[bool | None]:
            return [_cmp(r, ge(3)), _cmp(g, lambda v: v <= 0.02 * size)]

        timing_row(
            "A1",
            f"first commit of a {gib} CSV",
            size,
            "ratio ≥ 2",
            lambda _t, r, _g: [_cmp(r, ge(2))],
        )
        timing_row(
            "A2",
            "commit after editing 1% of rows (middle)",
            size,
            "ratio ≥ 3, TL growth ≤ 2%",
            small_growth,
        )
        timing_row(
            "A3", "commit after appending 1% rows", size, "ratio ≥ 3, TL growth ≤ 2%", small_growth
        )
        timing_row(
            "A4",
            "re-commit, nothing changed",
            size,
            "TL growth = 0",
            lambda _t, _r, g: [_cmp(g, lambda v: v == 0)],
        )
        timing_row(
            "A5",
            "checkout of v1 into a new folder",
            size,
            "≥ 1 GB/s, ratio ≥ 2",
            lambda t, r, _g: [_cmp(t, lambda v: size / v >= GB), _cmp(r, ge(2))],
            rate=lambda s: f"{size / s / GB:.2f} GB/s",
        )
        rss_row("A6", "peak RSS of the commits (A1-A4)", ["A1", "A2", "A3", "A4"])
    if tree is not None and results.steps.get("B1"):
        size, n = tree.total_bytes, tree.files
        timing_row(
            "B1",
            f"first commit of {n:,} files ({size / MB:,.0f} MB)",
            size,
            "≥ 10,000 files/s, ratio ≥ 5",
            lambda t, r, _g: [_cmp(t, lambda v: n / v >= 10_000), _cmp(r, ge(5))],
            rate=lambda s: f"{n / s:,.0f} files/s",
        )
        timing_row(
            "B2",
            "status, nothing changed (warm)",
            size,
            "TL < 0.3 s",
            lambda t, _r, _g: [_cmp(t, lambda v: v < 0.3)],
        )
        timing_row(
            "B3",
            "commit after changing 1% of files",
            size,
            "TL < 1 s",
            lambda t, _r, _g: [_cmp(t, lambda v: v < 1)],
        )
        timing_row(
            "B4",
            "checkout of v1 into a new folder",
            size,
            "ratio ≥ 3",
            lambda _t, r, _g: [_cmp(r, ge(3))],
            rate=lambda s: f"{size / s / GB:.2f} GB/s",
        )
        rss_row("B5", "peak RSS of the commits (B1, B3)", ["B1", "B3"])
    return rows


def print_table(rows: list[Row], title: str) -> None:
    """Print the table with rich when it is installed, as aligned plain text otherwise."""
    cells = [list(asdict(r).values()) for r in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(str(c)) for c in col) for col in zip(COLUMNS, *cells, strict=False)]
        print(title)
        for line in (COLUMNS, *cells):
            print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))
        return
    table = Table(title=title, show_lines=False)
    for col in COLUMNS:
        table.add_column(col, justify="right" if col == "DVC/TL" else "left", no_wrap=True)
    styles = {"PASS": "green", "FAIL": "bold red", "n/a": "yellow"}
    for line in cells:
        table.add_row(*line[:-1], f"[{styles.get(line[-1], '')}]{line[-1]}[/]")
    Console(width=max(220, shutil.get_terminal_size().columns)).print(table)


def markdown_table(rows: list[Row]) -> str:
    """The same table as GitHub-flavoured markdown."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(asdict(r).values()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def machine_info(
    dvc: Path | None, tl: Path | None, workdir: Path, env: Mapping[str, str]
) -> dict[str, str]:
    """CPU, memory, OS, file system and tool versions, for the report header."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem = next(
        (
            int(line.split()[1]) * 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    fs = "unknown"
    best = -1
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if str(workdir).startswith(parts[1]) and len(parts[1]) > best:
            fs, best = parts[2], len(parts[1])

    def version(exe: Path | None, dist: str) -> str:
        if exe is None:
            return "not run"
        try:
            return run_quiet([str(exe), "--version"], workdir, env).strip().splitlines()[-1]
        except (CommandFailed, OSError, IndexError):
            pass
        try:  # no --version: ask the interpreter named by the entry point's #! line
            python = exe.read_text(errors="replace").splitlines()[0].removeprefix("#!").strip()
            code = f"import importlib.metadata as m; print(m.version({dist!r}))"
            return run_quiet([python, "-c", code], workdir, env).strip()
        except (CommandFailed, OSError, IndexError):
            return "unknown"

    def git_rev() -> str:
        try:
            rev = run_quiet(["git", "rev-parse", "--short", "HEAD"], REPO_ROOT, env).strip()
            dirty = run_quiet(["git", "status", "--porcelain", "--", "threadline"], REPO_ROOT, env)
        except (CommandFailed, OSError):
            return ""
        return f" (git {rev}{', threadline/ modified' if dirty.strip() else ''})"

    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": human_bytes(mem),
        "os": platform.platform(),
        "python": platform.python_version(),
        "filesystem": f"{fs} ({workdir})",
        "dvc": version(dvc, "dvc"),
        "threadline": version(tl, "threadline") + (git_rev() if tl else ""),
    }


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def find_dvc(option: str | None) -> Path:
    """--dvc, else `dvc` on PATH, else .bench-venv/bin/dvc under the repo root."""
    if option:
        return Path(option)
    on_path = shutil.which("dvc")
    return Path(on_path) if on_path else REPO_ROOT / ".bench-venv" / "bin" / "dvc"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; --quick fills in small sizes for whatever was not given."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--threadline", help="threadline executable (default: .venv/bin/threadline)")
    p.add_argument("--dvc", help="dvc executable (default: dvc on PATH, else .bench-venv/bin/dvc)")
    p.add_argument("--csv-size", type=parse_size, help="size of the CSV (default 1GiB)")
    p.add_argument("--files", type=int, help="number of small files (default 20000)")
    p.add_argument("--repeat", type=int, help="repeats; medians are reported (default 3)")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 64MiB CSV, 2,000 files, 1 repeat"
    )
    p.add_argument("--scenarios", default="A,B", help="which scenarios to run (default A,B)")
    p.add_argument("--tools", default="threadline,dvc", help="which tools to run")
    p.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="scratch folder: cached data and run folders (default /tmp/tlbench)",
    )
    p.add_argument("--keep", action="store_true", help="keep the run folders afterwards")
    p.add_argument("--markdown", type=Path, help="also write the table as markdown here")
    p.add_argument("--json", type=Path, help="also write all raw measurements as JSON here")
    args = p.parse_args(argv)
    quick = {"csv_size": 64 << 20, "files": 2_000, "repeat": 1}
    full = {"csv_size": 1 << 30, "files": 20_000, "repeat": 3}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _executables(args: argparse.Namespace) -> dict[str, Path]:
    """The tools to run, after checking that their executables exist."""
    tools = {t.strip() for t in args.tools.split(",") if t.strip()}
    exes: dict[str, Path] = {}
    if "threadline" in tools:
        exes["threadline"] = Path(args.threadline or REPO_ROOT / ".venv" / "bin" / "threadline")
    if "dvc" in tools:
        exes["dvc"] = find_dvc(args.dvc)
    for name, exe in exes.items():
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            sys.exit(
                f"{name} executable not found at {exe}; pass --{name} PATH"
                + (
                    " or run `make bench` (installs benchmarks/requirements.txt into .bench-venv)"
                    if name == "dvc"
                    else ""
                )
            )
    if "dvc" in exes and shutil.which("git") is None:
        sys.exit("DVC needs git on PATH")
    return exes


def run_all(
    args: argparse.Namespace,
    exes: dict[str, Path],
    env: Mapping[str, str],
    ds: CsvDataset | None,
    tree: FileTree | None,
) -> Results:
    """Every repeat, every scenario, every tool, each in a fresh run folder."""
    results = Results()
    classes: dict[str, type[Workspace]] = {"threadline": ThreadlineWorkspace, "dvc": DvcWorkspace}
    order = sorted(exes, key=lambda t: t != "dvc")
    runs_dir = args.workdir / "runs"
    remove(runs_dir)  # leftovers of an interrupted run
    # Deleting many files on this kind of ext4 VM makes file creation right afterwards
    # several times slower, so run folders are deleted at the end when the disk allows.
    need = args.repeat * ((8 * ds.size if ds else 0) + (6 * tree.total_bytes if tree else 0))
    defer_cleanup = shutil.disk_usage(args.workdir).free > 1.2 * need
    if not defer_cleanup:
        print(f"low disk space: deleting run folders as we go (needs ~{human_bytes(need)})")
    scenarios: list[tuple[str, str, Callable[[Workspace], None]]] = []
    if ds is not None:
        scenarios.append(("A", "big.csv", lambda ws: scenario_csv(ws, ds, results)))
    if tree is not None:
        scenarios.append(("B", "data", lambda ws: scenario_files(ws, tree, results)))
    for rep in range(args.repeat):
        tools = order if rep % 2 == 0 else order[::-1]  # alternate who goes first
        for scen, target, body in scenarios:
            print(f"repeat {rep + 1}/{args.repeat}, scenario {scen}")
            for tool in tools:
                run_dir = runs_dir / f"r{rep}-{scen}-{tool}"
                ws = classes[tool](exes[tool], run_dir, target, env)
                try:
                    body(ws)
                except CommandFailed as exc:
                    msg = f"{tool}, scenario {scen}, repeat {rep + 1}: {exc.describe()}"
                    print("  ERROR " + msg, file=sys.stderr)
                    results.errors.append(msg)
                finally:
                    if not args.keep and not defer_cleanup:
                        remove(run_dir)
    if not args.keep:
        remove(runs_dir)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Generate (or reuse) the data, run both tools, print and save the table."""
    args = parse_args(argv)
    exes = _executables(args)
    env = child_env()
    args.workdir.mkdir(parents=True, exist_ok=True)
    wanted = {s.strip().upper() for s in args.scenarios.split(",")}
    ds = ensure_csv_dataset(args.workdir, args.csv_size) if "A" in wanted else None
    tree = ensure_file_tree(args.workdir, args.files) if "B" in wanted else None
    machine = machine_info(exes.get("dvc"), exes.get("threadline"), args.workdir, env)
    for exe in exes.values():  # warm the interpreters' files into the page cache, untimed
        subprocess.run([str(exe), "--help"], env=env, capture_output=True, check=False)

    load_before = os.getloadavg()[0]
    if load_before > 0.5 * (os.cpu_count() or 1):
        print(f"warning: the machine is busy (load {load_before:.2f}); timings will be noisy")
    t0 = time.perf_counter()
    results = run_all(args, exes, env, ds, tree)
    # Other work on the machine skews the ratios; record how busy it was, for the reader.
    machine["load"] = (
        f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"timed part took {time.perf_counter() - t0:.0f} s"
    )

    rows = build_rows(results, args.csv_size, tree, list(exes))
    command = "python benchmarks/data_repo_vs_dvc.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    title = (
        f"Threadline data repo vs DVC — medians of {args.repeat} repeat(s), warm cache, "
        f"ratio = DVC time / Threadline time"
    )
    print()
    for key, value in machine.items():
        print(f"{key:>11}: {value}")
    print_table(rows, title)
    for err in results.errors:
        print(f"\nERROR: {err}", file=sys.stderr)
    if args.markdown:
        header = "\n".join(f"- {k}: {v}" for k, v in machine.items())
        args.markdown.write_text(
            f"{title}\n\nCommand: `{command.strip()}`\n\n{header}\n\n{markdown_table(rows)}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": command.strip(),
                    "machine": machine,
                    "csv_size": args.csv_size,
                    "files": None if tree is None else asdict(tree) | {"root": str(tree.root)},
                    "steps": {
                        s: {t: [asdict(r) for r in rs] for t, rs in by_tool.items()}
                        for s, by_tool in results.steps.items()
                    },
                    "rows": [asdict(r) for r in rows],
                    "info": results.info,
                    "errors": results.errors,
                },
                indent=1,
            )
        )
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
