"""The demo's preparation as a pipeline: one datum per daily export, then train/validation/test.

`clean` runs once per export file (a datum), so a new export is cleaned on its own while the
earlier days' outputs are reused; `assemble` gathers every cleaned day and splits customers by
a hash of their id, so a customer stays in its part as days are added.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from threadline.pipelines import Input, Output, Pipeline, step

if TYPE_CHECKING:
    from pathlib import Path


@step
def clean(raw: Path = Input("churn-exports@main", datums="glob:*.csv"), out: Path = Output()) -> None:
    """Normalise one day's export: region codes lower-cased and trimmed, missing spend dropped."""
    for source in sorted(raw.rglob("*.csv")):
        table = pacsv.read_csv(source)
        table = table.set_column(table.schema.get_field_index("region"), "region",
                                 pc.utf8_lower(pc.utf8_trim_whitespace(table.column("region"))))
        table = table.filter(pc.is_valid(table.column("monthly_spend")))
        pq.write_table(table, out / f"{source.stem}.parquet")


@step
def assemble(days: Path = Input("step:clean"), out: Path = Output(), validation: int = 10,
             test: int = 10) -> None:
    """All cleaned days as train/validation/test parts, by a stable hash of the customer id."""
    table = pa.concat_tables(pq.read_table(p) for p in sorted(days.rglob("*.parquet")))
    buckets = pa.array([int(hashlib.blake2b(c.encode(), digest_size=4).hexdigest(), 16) % 100
                        for c in table.column("customer_id").to_pylist()])
    parts = {"test": pc.less(buckets, test),
             "validation": pc.and_(pc.greater_equal(buckets, test), pc.less(buckets, test + validation)),
             "train": pc.greater_equal(buckets, test + validation)}
    for name, mask in parts.items():
        pq.write_table(table.filter(mask), out / f"{name}.parquet")


prep = Pipeline("churn-prep", steps=[clean, assemble])
