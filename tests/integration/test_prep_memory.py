"""Preparation steps stream: a table bigger than a memory cap is processed within the cap.

The table is 1.3 GB in memory (as Arrow, 1,280,000 rows of about 1 KB); each step runs as the
real CLI in a child process whose peak resident memory (from the kernel's rusage) must stay
under 600 MB - less than half the table, interpreter and libraries (about 100 MB) and the
Parquet reader's own buffers (about 150 MB on rows this wide) included.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from .homes import CHILD_TIMEOUT, cli_executable

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .homes import Home

ROWS = 1_280_000
TEXT = 1000
CAP = 600_000_000
FILLER = "x" * (TEXT - 16)


def _write_table(path: Path) -> int:
    """A Parquet file of ROWS distinct ~1 KB rows (compresses well on disk); its Arrow size."""
    size = 0
    schema = pa.schema([("id", pa.int64()), ("text", pa.string()), ("group", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, ROWS, 40_000):
            ids = range(start, start + 40_000)
            batch = pa.record_batch(
                [pa.array(ids), pa.array([f" {i:014d}{FILLER} " for i in ids]),
                 pa.array([i % 7 for i in ids])],
                schema=schema,
            )
            size += batch.nbytes
            writer.write_batch(batch)
    return size


#: Runs a command and prints its peak RSS in KiB. A child's ru_maxrss starts at its parent's
#: RSS at fork and survives exec, so the CLI is started from this small interpreter rather than
#: from the test process (which holds the generated table's pages).
_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
    "sys.stderr.write(done.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(done.returncode)\n"
)


def _peak_rss(home: Home, *args: str) -> int:
    """Run `threadline ARGS` to the end; return its peak resident set size in bytes."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, cli_executable(), *args], cwd=home.root,
                          env=home.env, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1]) * 1024  # Linux reports KiB


def test_steps_process_a_table_bigger_than_the_memory_cap_within_it(
    make_home: Callable[..., Home], tmp_path: Path
) -> None:
    home = make_home("raw", "clean", "cleansed", "splits")
    source = tmp_path / "src"
    source.mkdir()
    arrow_size = _write_table(source / "t.parquet")
    assert arrow_size > 2 * CAP
    assert home.cli("data", "commit", "raw", str(source), "-m", "big").returncode == 0
    (tmp_path / "spec.yaml").write_text("format: threadline.cleanse/1\nsteps:\n  - strip: [text]\n")

    peaks = {
        "dedupe": _peak_rss(home, "prep", "dedupe", "raw:t.parquet", "--into", "clean"),
        "cleanse": _peak_rss(home, "prep", "cleanse", "clean:t.parquet", "--spec",
                             str(tmp_path / "spec.yaml"), "--into", "cleansed"),
        "split": _peak_rss(home, "prep", "split", "cleansed:t.parquet", "--into", "splits",
                           "--fractions", "train=0.8,test=0.2", "--by", "id"),
    }
    assert {step: peak < CAP for step, peak in peaks.items()} == dict.fromkeys(peaks, True), peaks

    # and the work was done on every row
    with home.session() as repos:
        from threadline.data.tables import read_table

        train = read_table(repos, "splits:train.parquet").num_rows
        test = read_table(repos, "splits:test.parquet").num_rows
        assert train + test == ROWS
        first = read_table(repos, "cleansed:t.parquet").slice(0, 1).column("text")[0].as_py()
        assert first == f"{0:014d}{FILLER}"
