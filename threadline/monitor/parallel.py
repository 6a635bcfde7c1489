"""Large windows summarised on the executors: row slices in parallel, summaries merged.

Window summaries are counts in the reference's bins, so the summary of a window is the sum of
the summaries of its slices, exactly: a check of a big window gives the same report whether
it ran in one process, on the local process pool or on a Ray cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from threadline.compute.base import Task
from threadline.errors import InvalidArgument
from threadline.monitor.columns import as_table
from threadline.monitor.reference import Reference
from threadline.monitor.window import WindowSummary, summarise

if TYPE_CHECKING:
    from threadline.compute.base import Executor


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def summarise_part(reference_json: str, rows: bytes) -> dict[str, Any]:
    """One slice's summary (runs in a worker; arguments and result are plain data)."""
    table = pa.ipc.open_stream(rows).read_all()
    return summarise(Reference.from_json(reference_json), table).to_dict()


def summarise_parallel(reference: Reference, data: Any, executor: Executor, *,
                       parts: int) -> WindowSummary:
    """`summarise(reference, data)`, computed as `parts` row slices on `executor`."""
    if parts < 1:
        raise InvalidArgument(f"parts must be at least 1, not {parts}")
    table = as_table(data)
    table = table.select([c for c in reference.columns if c in table.column_names])
    size = -(-table.num_rows // parts) if table.num_rows else 0
    if size == 0:
        return summarise(reference, table)
    text = reference.to_json()
    tasks = [Task(summarise_part, (text, _ipc(table.slice(start, size))), name="monitor.summarise")
             for start in range(0, table.num_rows, size)]
    summaries = [WindowSummary.from_dict(found) for found in executor.map(tasks)]
    merged = summaries[0]
    for other in summaries[1:]:
        merged = merged.merge(other)
    return merged
