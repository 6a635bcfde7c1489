"""Errors of the registry: a promotion refused by its gates, a model that may not be loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.errors import Conflict, Unauthorized

if TYPE_CHECKING:
    from threadline.registry.gates import GateResult


class GateFailed(Conflict):
    """A promotion was refused: one or more gates of the alias's policy did not pass.

    A `Conflict` because the request is well-formed but the model's state does not allow it
    (HTTP 409); its own exit code lets scripts tell a refused promotion from a lost race.

    Attributes:
        results: every gate's result, passed and failed.
    """

    exit_code = 10

    def __init__(self, message: str, results: list[GateResult]) -> None:
        super().__init__(message)
        self.results = results

    @property
    def failed(self) -> list[GateResult]:
        """The gates that did not pass."""
        return [r for r in self.results if not r.passed]


class UntrustedModel(Unauthorized):
    """Loading the model would run code or build types the caller has not trusted.

    Attributes:
        untrusted: the type names (or `pickle`, `code`) that would need the caller's trust.
    """

    def __init__(self, message: str, untrusted: list[str]) -> None:
        super().__init__(message)
        self.untrusted = untrusted
