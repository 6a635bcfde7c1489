"""Datums: only new or changed datums are processed; removed ones lose their outputs; the merged
output equals a fresh run's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import blake3
from sqlalchemy import select

from threadline.data.manifest import FileEntry
from threadline.meta.models import CommitRow, PipelineCacheRow
from threadline.pipelines import datums, engine, runs
from threadline.pipelines.spec import DatumSpec

if TYPE_CHECKING:
    import pytest
    from pipeline_helpers import Project

STEPS = '''
from threadline.pipelines import Input, Output, Pipeline, step

@step
def measure(raw=Input("{source}", datums="{datums}"), out=Output(), scale=1):
    for f in sorted(p for p in raw.rglob("*") if p.is_file()):
        (out / "size").write_text(str(len(f.read_bytes()) * scale))
        (out / "name").write_text(f.name)

@step
def total(m=Input("step:measure"), out=Output()):
    (out / "total").write_text(str(sum(int(p.read_text()) for p in m.rglob("size"))))

pipe = Pipeline("dat", steps=[measure, total])
'''


def _entry(path: str, key: str = "k") -> FileEntry:
    return FileEntry(path, key, 1, 1)


def test_split_by_file_glob_and_partition_names_datums_by_path() -> None:
    entries = [_entry("t/date=1/a.parquet"), _entry("t/date=1/b.parquet"), _entry("t/date=2/a.parquet"),
               _entry("t/readme.md")]
    assert set(datums.split(entries, "t", DatumSpec("file"))) == {
        "date=1/a.parquet", "date=1/b.parquet", "date=2/a.parquet", "readme.md"}
    assert set(datums.split(entries, "t", DatumSpec("glob", pattern="*.md"))) == {"readme.md"}
    parts = datums.split(entries, "t", DatumSpec("partition"))
    assert set(parts) == {"date=1", "date=2"}
    assert parts["date=1"].files == ("t/date=1/a.parquet", "t/date=1/b.parquet")
    changed = datums.split([_entry("t/date=1/a.parquet", "other"), *entries[1:]], "t", DatumSpec("partition"))
    assert changed["date=1"].key != parts["date=1"].key
    assert changed["date=2"].key == parts["date=2"].key


def test_a_file_datum_key_is_the_same_whether_remembered_or_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datums, "_FILE_KEYS", {})
    monkeypatch.setattr(datums, "_FILE_DATUMS", {})
    entries = [_entry("t/a", "1"), _entry("t/b", "2"), FileEntry("t/c", "3", 1, 1, executable=True)]
    first = datums.split(entries, "t", DatumSpec("file"))
    assert first["a"].key == blake3.blake3(b"a\x001\x000\n").hexdigest()
    assert first["c"].key == blake3.blake3(b"c\x003\x001\n").hexdigest()
    again = datums.split(entries, "t", DatumSpec("file"))
    assert again == first
    assert again["a"] is first["a"]  # the remembered datum, not a new one
    moved = datums.split([_entry("u/a", "1")], "u", DatumSpec("file"))
    assert moved["a"].key == first["a"].key  # relative paths name datums
    changed = datums.split([_entry("t/a", "9"), FileEntry("t/c", "3", 1, 1)], "t", DatumSpec("file"))
    assert changed["a"].key != first["a"].key
    assert changed["c"].key != first["c"].key  # the executable bit is part of the key
    monkeypatch.setattr(datums, "_FILE_KEYS_MAX", 1)
    assert datums.split(entries, "t", DatumSpec("file")) == first  # a full memory is emptied
    assert len(datums._FILE_KEYS) == len(datums._FILE_DATUMS) == 3


def test_the_content_key_hashes_the_datums_in_name_order() -> None:
    both = {"b": datums.Datum("b", ("b",), "k2"), "a": datums.Datum("a", ("a",), "k1")}
    assert datums.content_key(both) == blake3.blake3(b"a\x00k1\nb\x00k2\n").hexdigest()


def test_a_plan_processes_new_and_changed_and_drops_removed() -> None:
    now = datums.split([_entry("a", "1"), _entry("b", "2"), _entry("c", "3")], "", DatumSpec("file"))
    before = {"a": now["a"].key, "b": "old", "gone": "x"}
    plan = datums.plan(now, before, "prev")
    assert [d.name for d in plan.process] == ["b", "c"]
    assert plan.reuse == ["a"]
    assert plan.removed == ["gone"]
    assert plan.previous == "prev"
    assert [d.name for d in datums.plan(now, None, None).process] == ["a", "b", "c"]


def _files(n: int, start: int = 0) -> dict[str, bytes]:
    return {f"f{i:04d}.txt": b"x" * (i % 7 + 1) for i in range(start, start + n)}


def test_adding_removing_and_changing_datums_processes_exactly_those(project: Project) -> None:
    files = _files(1000)
    project.commit("raw", files)
    spec = project.module("dat_steps", STEPS.format(source="raw@main", datums="file")).pipe.spec()
    first = project.run(spec)
    assert first.status == "succeeded"
    assert (first.steps["measure"].processed, first.steps["measure"].skipped) == (1000, 0)

    files.update(_files(10, start=1000))
    project.commit("raw", files)
    added = project.run(spec)
    m = added.steps["measure"]
    assert (m.status, m.processed, m.skipped, m.removed) == ("succeeded", 10, 1000, 0)
    assert added.steps["total"].status == "succeeded"
    assert len(project.tree("dat-measure")) == 2 * 1010

    del files["f0003.txt"]
    files["f0004.txt"] = b"changed!"
    project.commit("raw", files)
    again = project.run(spec).steps["measure"]
    assert (again.processed, again.skipped, again.removed) == (1, 1008, 1)
    tree = project.tree("dat-measure")
    assert "f0003.txt/size" not in tree
    assert "f0003.txt/name" not in tree
    assert project.read("dat-measure", "f0004.txt/size") == b"8"

    assert project.run(spec).steps["measure"].status == "cached"
    kept = project.tree("dat-measure")
    project.forget_cache()
    fresh = project.run(spec).steps["measure"]
    assert (fresh.processed, fresh.skipped) == (1009, 0)
    assert project.tree("dat-measure") == kept


def test_datum_keys_live_with_the_cache_entry_and_older_or_damaged_ones_still_work(
    project: Project,
) -> None:
    files = _files(20)
    project.commit("raw", files)
    spec = project.module("dat_steps", STEPS.format(source="raw@main", datums="file")).pipe.spec()
    project.run(spec)
    output = project.repos.resolve("dat-measure@main").require_commit()
    assert output.metadata["datum_count"] == 20  # the keys themselves are not in the commit
    with project.repos.db.session() as session:
        (entry,) = session.scalars(select(PipelineCacheRow).where(PipelineCacheRow.step == "measure"))
        keys = runs.entry_datums(entry)
    assert keys is not None
    assert sorted(keys) == sorted(files)

    def added(n: int) -> tuple[int, int]:
        files.update(_files(1, start=n))
        project.commit("raw", files)
        step = project.run(spec).steps["measure"]
        return step.processed, step.skipped

    # an entry written before the keys moved: they are read from its commit's metadata
    with project.repos.db.session() as session, session.begin():
        for row in session.scalars(select(PipelineCacheRow)):
            row.datums = None
        commit = session.get(CommitRow, project.repos.resolve("dat-measure@main").require_commit().id)
        assert commit is not None
        commit.meta = {**commit.meta, "datums": keys}
    assert added(20) == (1, 20)
    # damaged keys: every datum is processed again, and the output is the same
    with project.repos.db.session() as session, session.begin():
        for row in session.scalars(select(PipelineCacheRow)):
            row.datums = b"not zstd"
    before = project.tree("dat-measure")
    assert added(21) == (22, 0)
    tree = project.tree("dat-measure")
    assert {p: k for p, k in tree.items() if not p.startswith("f0021.txt/")} == before
    assert added(22) == (1, 22)  # the keys were written again


def test_datum_keys_this_process_wrote_are_read_back_without_unpacking(project: Project) -> None:
    files = _files(20)
    project.commit("raw", files)
    spec = project.module("dat_steps", STEPS.format(source="raw@main", datums="file")).pipe.spec()
    project.run(spec)
    with project.repos.db.session() as session:
        (entry,) = session.scalars(select(PipelineCacheRow).where(PipelineCacheRow.step == "measure"))
        session.expunge(entry)
    keys = runs.entry_datums(entry)
    assert keys is not None
    assert sorted(keys) == sorted(files)
    assert runs.entry_datums(entry) is keys  # the mapping the run wrote, not a new decoding
    # stored bytes that are not what this process wrote are unpacked (and checked) instead
    entry.datums = b"not zstd"
    assert runs.entry_datums(entry) is None


def test_an_output_branch_moved_by_hand_still_gets_every_reused_datum(project: Project) -> None:
    files = _files(6)
    project.commit("raw", files)
    spec = project.module("dat_steps", STEPS.format(source="raw@main", datums="file")).pipe.spec()
    first = project.run(spec).steps["measure"].commit
    files.update(_files(1, start=6))
    project.commit("raw", files)
    second = project.run(spec).steps["measure"].commit
    assert second is not None
    # by hand, meanwhile: the worker that made `second` takes the branch to be there still, is
    # refused when it publishes, and commits again against the branch as it is
    project.repos.rollback("dat-measure@main", f"dat-measure@{first}")
    files.update(_files(1, start=7))
    project.commit("raw", files)
    step = project.run(spec).steps["measure"]
    assert (step.processed, step.skipped) == (1, 7)
    tree = project.tree("dat-measure")
    assert {p: k for p, k in tree.items() if not p.startswith("f0007.txt/")} == project.tree(
        "dat-measure", second)  # the reused outputs come from the output the plan compared with
    assert project.read("dat-measure", "f0007.txt/name") == b"f0007.txt"
    head = project.repos.resolve("dat-measure@main").require_commit()
    assert head.parents == [first]  # committed onto the moved head, not over it


def test_a_parameter_change_reprocesses_every_datum(project: Project) -> None:
    project.commit("raw", _files(5))
    spec = project.module("dat_steps", STEPS.format(source="raw@main", datums="file")).pipe.spec()
    project.run(spec)
    scaled = project.run(spec, params={"scale": 3}).steps["measure"]
    assert (scaled.processed, scaled.skipped) == (5, 0)
    back = project.run(spec).steps["measure"]  # the earlier parameters' output is still cached
    assert back.status == "cached"
    assert project.read("dat-measure", "f0001.txt/size") == b"2"


def test_partitions_of_a_table_are_datums(project: Project) -> None:
    parts = {f"date=2024-01-0{d}/part-{i}.csv": f"{d},{i}\n".encode() for d in range(1, 4) for i in range(2)}
    project.commit("events", parts)
    spec = project.module("dat_steps", STEPS.format(source="events@main", datums="partition")).pipe.spec()
    assert project.run(spec).steps["measure"].processed == 3
    parts["date=2024-01-04/part-0.csv"] = b"4,0\n"
    project.commit("events", parts)
    step = project.run(spec).steps["measure"]
    assert (step.processed, step.skipped) == (1, 3)
    assert "date=2024-01-04/size" in project.tree("dat-measure")


FANNED = '''
from threadline.pipelines import Input, Output, Pipeline, step

@step
def measure(raw=Input("raw@main", datums="file"), out=Output()):
    for f in raw.rglob("*.txt"):
        if f.read_bytes() == b"poison":
            raise ValueError("poisoned datum " + f.name)
        (out / "size").write_text(str(len(f.read_bytes())))

@step
def total(m=Input("step:measure"), out=Output()):
    (out / "total").write_text(str(sum(int(p.read_text()) for p in m.rglob("size"))))

pipe = Pipeline("fan", steps=[measure, total])
'''


def test_datums_fan_out_over_workers_and_merge_into_one_commit(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "FANOUT_MIN", 8)
    files = _files(40)
    project.commit("raw", files)
    spec = project.module("fan_steps", FANNED).pipe.spec()
    project.executor.workers = 2
    result = project.run(spec)
    assert result.status == "succeeded", [o.error for o in result.steps.values()]
    assert result.steps["measure"].processed == 40
    assert sorted(project.executor.submitted) == ["fan.measure[1/2]", "fan.measure[2/2]",
                                                  "fan.measure[commit]", "fan.total"]
    fanned = project.tree("fan-measure")
    assert len(fanned) == 40

    files.update(_files(20, start=40))
    project.commit("raw", files)
    more = project.run(spec).steps["measure"]
    assert (more.processed, more.skipped) == (20, 40)
    merged = project.tree("fan-measure")
    project.executor.workers = 1  # the same work in one task gives the same tree
    project.forget_cache()
    assert project.run(spec).steps["measure"].processed == 60
    assert project.tree("fan-measure") == merged


def test_a_failing_chunk_fails_the_step_and_publishes_nothing(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "FANOUT_MIN", 8)
    files = _files(40)
    files["f0033.txt"] = b"poison"
    project.commit("raw", files)
    spec = project.module("fan_steps", FANNED).pipe.spec()
    project.executor.workers = 2
    result = project.run(spec)
    assert result.status == "failed"
    assert "poisoned datum f0033.txt" in result.steps["measure"].error
    assert result.steps["total"].status == "skipped"
    assert project.repos.resolve("fan-measure@main").commit is None
