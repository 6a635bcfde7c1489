"""Model names, alias names and model URIs (`churn`, `churn@3`, `churn@production`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from threadline.data.paths import check_name
from threadline.errors import InvalidArgument

#: the aliases every deployment tool knows; others are free names matching `_ALIAS_RE`
STANDARD_ALIASES = ("production", "staging", "fallback")
_ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
#: names that would read as a version: `3`, `v3`, `V12`; `latest` means the newest version
_VERSION_LIKE = re.compile(r"^[vV]?\d+$")
LATEST = "latest"


def check_model_name(name: str) -> str:
    """A model name is a data-repo branch name (its files live on that branch of tl-models)."""
    return check_name(name, "model name")


def check_alias(alias: str) -> str:
    """Return `alias` if it is a valid alias name, else raise InvalidArgument."""
    if not isinstance(alias, str) or _VERSION_LIKE.match(alias) or alias == LATEST:
        raise InvalidArgument(
            f"invalid alias {alias!r}: an alias must not look like a version number or be "
            f"{LATEST!r}; use e.g. {', '.join(STANDARD_ALIASES)}"
        )
    if not _ALIAS_RE.match(alias):
        raise InvalidArgument(
            f"invalid alias {alias!r}: use 1-63 lowercase letters, digits, '_' or '-', "
            "starting with a letter"
        )
    return alias


@dataclass(frozen=True)
class ModelRef:
    """A parsed model URI: the name and a version number, an alias, or neither (latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def parse_model_uri(uri: str) -> ModelRef:
    """Parse `name`, `name@latest`, `name@3` or `name@alias`."""
    if not isinstance(uri, str) or not uri:
        raise InvalidArgument(f"invalid model URI {uri!r}: expected NAME[@VERSION|ALIAS]")
    name, _, rev = uri.removeprefix("models:/").partition("@")
    check_model_name(name)
    if not rev or rev == LATEST:
        return ModelRef(name)
    if rev.isdigit():
        return ModelRef(name, version=int(rev))
    return ModelRef(name, alias=check_alias(rev))


def version_or_alias(name: str, which: int | str | None) -> ModelRef:
    """A ModelRef from a name and a version number, a digit string, an alias or None (latest)."""
    if which is None:
        return ModelRef(check_model_name(name))
    if isinstance(which, int):
        return ModelRef(check_model_name(name), version=which)
    return parse_model_uri(f"{name}@{which}")
