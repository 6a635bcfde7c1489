"""The ref syntax `repo[@rev][~N][:path]`."""

from __future__ import annotations

import pytest

from threadline.data.refs import RefSpec, parse_ref
from threadline.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sales", RefSpec("sales")),
        ("sales@main", RefSpec("sales", "main")),
        ("sales@v1", RefSpec("sales", "v1")),
        ("sales@v1.2-rc_3", RefSpec("sales", "v1.2-rc_3")),
        ("sales@main~3", RefSpec("sales", "main", 3)),
        ("sales@abcd1234~2:dir/x.csv", RefSpec("sales", "abcd1234", 2, "dir/x.csv")),
        ("sales:dir/x.csv", RefSpec("sales", None, 0, "dir/x.csv")),
        ("sales@main:", RefSpec("sales", "main", 0, "")),
        ("sales@main:/", RefSpec("sales", "main", 0, "")),
        ("sales@main:./a//b/", RefSpec("sales", "main", 0, "a/b")),
        ("sales@main:dir/a:b.csv", RefSpec("sales", "main", 0, "dir/a:b.csv")),
    ],
)
def test_parse_valid_refs(text: str, expected: RefSpec) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["sales", "sales@main", "sales@main~2", "sales@abcd1234~2:dir/x.csv", "s:"])
def test_str_round_trips(text: str) -> None:
    assert parse_ref(str(parse_ref(text))) == parse_ref(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid ref ''"),
        ("a\x00b", "invalid ref"),
        ("@main", "invalid repo name ''"),
        ("-x", "invalid repo name '-x'"),
        ("sa les", "invalid repo name 'sa les'"),
        ("sales@", "invalid revision '' in 'sales@'"),
        ("sales@main~", "invalid revision 'main~'"),
        ("sales@main~x", "invalid revision 'main~x'"),
        ("sales@main~1234567", "invalid revision"),
        ("sales@~2", "invalid revision '~2'"),
        ("sales@a@b", "invalid revision 'a@b'"),
        ("sales@a..b", "invalid revision 'a..b'"),
        ("sales@main:../x", "escapes the repository"),
        ("sales@main:/etc/passwd", "is absolute"),
        ("sales@main:a\\b", "backslash"),
        ("x" * 101, "invalid repo name"),
    ],
)
def test_invalid_refs_are_refused_with_the_syntax(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("~", "~").replace(".", r"\.")):
        parse_ref(text)


def test_non_string_ref_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"expected REPO\[@BRANCH\|TAG\|COMMIT\]\[~N\]"):
        parse_ref(None)  # type: ignore[arg-type]
