"""`threadline prep ...` through the real CLI: profile, split by each method, bad options."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .conftest import Shell


def _setup(shell: Shell) -> None:
    shell.run("init")
    shell.run("data", "create", "raw")
    shell.run("data", "create", "splits")
    src = shell.cwd / "src"
    src.mkdir()
    rows = [f"c{i},{i % 5},{'yes' if i % 3 == 0 else 'no'},2025-{1 + i % 12:02d}-15"
            for i in range(3000)]
    (src / "t.csv").write_text("id,score,label,day\n" + "\n".join(rows) + "\n")
    shell.run("data", "commit", "raw", "src", "-m", "raw")


def test_profile_and_split_through_the_cli(shell: Shell) -> None:
    _setup(shell)
    prof = shell.json("prep", "profile", "raw:t.csv")
    assert prof["rows"] == 3000
    assert prof["format"] == "threadline.profile/1"
    shown = shell.run("prep", "profile", "raw:t.csv").stdout
    assert "3,000 rows" in shown

    out = shell.json("prep", "split", "raw:t.csv", "--into", "splits",
                     "--fractions", "train=0.9,test=0.1", "--stratify", "label")
    assert out["rows"] == {"train": 2700, "test": 300}
    listing = {e["path"]: e["rows"] for e in shell.json("data", "ls", "splits")}
    assert listing["train.parquet"] == 2700
    assert listing["test.parquet"] == 300
    assert "_threadline/split.json" in listing

    by_time = shell.json("prep", "split", "raw:t.csv", "--into", "splits",
                         "--fractions", "early=0.5,late=0.5", "--time", "day",
                         "--cutoffs", "2025-07-01")
    assert by_time["rows"] == {"early": 1500, "late": 1500}
    lineage = shell.run("lineage", "splits", "--up").stdout
    assert "-[prep.split]->" in lineage


def test_bad_split_options_fail_with_one_line_and_commit_nothing(shell: Shell) -> None:
    _setup(shell)
    cases = [
        (["--fractions", "train=0.8,test=0.3"], "sum to 1.1, not 1"),
        (["--fractions", "train=0.8,test"], "is not NAME=NUMBER"),
        (["--fractions", "a=0.5,b=0.5", "--by", "nope"], "split column 'nope' is not in the table"),
        (["--fractions", "a=0.5,b=0.5", "--by", "id", "--stratify", "label"],
         "choose one split method"),
    ]
    for options, message in cases:
        result = shell.run("prep", "split", "raw:t.csv", "--into", "splits", *options, code=2)
        assert result.stderr.startswith("error:"), result.stderr
        assert message in result.stderr.replace("\n", " ")
    assert shell.json("data", "log", "splits") == []


def test_ingest_through_the_cli(shell: Shell) -> None:
    shell.run("init")
    shell.run("data", "create", "raw")
    exports = shell.cwd / "exports"
    exports.mkdir()
    (exports / "a.csv").write_text("id,v\n1,x\n2,y\n")
    (exports / "b.jsonl").write_text('{"id": 3, "v": "z"}\n')
    out = shell.json("prep", "ingest", "exports/*.csv", "--into", "raw")
    assert out["total_rows"] == 2
    out = shell.json("prep", "ingest", "exports", "--into", "raw")
    assert out["table_rows"] == 3
    assert shell.json("prep", "profile", f"raw:{out['parts'][0]['part']}")["rows"] in (1, 2)
    missing = shell.run("prep", "ingest", "nope/*.csv", "--into", "raw", code=3)
    assert missing.stderr.startswith("error:")


def test_dedupe_through_the_cli(shell: Shell) -> None:
    _setup(shell)
    shell.run("data", "create", "clean")
    src = shell.cwd / "src" / "t.csv"
    src.write_text(src.read_text() + "c1,1,no,2025-02-15\nc1,1,no,2025-02-15\n")
    shell.run("data", "commit", "raw", "src", "-m", "with duplicates")
    out = shell.json("prep", "dedupe", "raw:t.csv", "--into", "clean", "--keep-removed")
    assert out["rows_in"] == 3002
    assert out["removed"] == {"exact": 2}
    by_key = shell.json("prep", "dedupe", "raw:t.csv", "--into", "clean", "--keys", "label")
    assert by_key["rows_kept"] == 2
    bad = shell.run("prep", "dedupe", "raw:t.csv", "--into", "clean", "--keep", "sometimes", code=2)
    assert bad.stderr.startswith("error:")


def test_schema_validate_and_cleanse_through_the_cli(shell: Shell) -> None:
    _setup(shell)
    shell.run("data", "create", "valid")
    shell.run("data", "create", "clean")
    shell.run("prep", "schema", "raw:t.csv", "-o", "rules.yaml")
    rules = (shell.cwd / "rules.yaml").read_text()
    assert "format: threadline.schema-rules/1" in rules
    assert shell.json("prep", "validate", "raw:t.csv", "--schema", "rules.yaml")["rows_valid"] == 3000
    (shell.cwd / "strict.yaml").write_text(
        "format: threadline.schema-rules/1\ncolumns:\n"
        "  - {name: id, type: string}\n  - {name: score, type: int64, max: 2, policy: {range: drop}}\n"
        "  - {name: label, type: string}\n  - {name: day, type: date32}\n"
    )
    out = shell.json("prep", "validate", "raw:t.csv", "--schema", "strict.yaml", "--into", "valid")
    assert out["rows_valid"] == 1800  # scores 0, 1, 2 of 0..4
    assert out["rows_dropped"] == 1200
    (shell.cwd / "clean.yaml").write_text(
        "format: threadline.cleanse/1\nsteps:\n  - derive: {score2: 'score * 2'}\n"
        "  - drop: [day]\n"
    )
    cleaned = shell.json("prep", "cleanse", "raw:t.csv", "--spec", "clean.yaml", "--into", "clean")
    assert cleaned["rows_out"] == 3000
    listing = {e["path"] for e in shell.json("data", "ls", "clean")}
    assert {"t.parquet", "_threadline/cleanse.yaml", "_threadline/profile.json"} <= listing
    bad = shell.run("prep", "cleanse", "raw:t.csv", "--spec", "nope.yaml", "--into", "clean", code=2)
    assert "cannot read nope.yaml" in bad.stderr
