"""A deployment's spec: its routes (which model versions answer, with what weight and role)
and its serving settings, parsed and checked once so the server never meets a bad value.

    routes:
      - {model: churn@production, weight: 90}            # mode primary by default
      - {model: churn@4, weight: 10, mode: canary}
      - {model: churn@5, mode: shadow, weight: 100}      # % of traffic copied to it
    settings: {max_batch_size: 32, deadline_ms: 2000, cache: {ttl_s: 60}}

A route names a model version or an alias; an alias route follows the alias when it moves.
Primary and canary routes share the traffic by weight; a request carrying the sticky header
always lands on the same one. Shadow routes get a copy of a share of the traffic; their answers
are logged, never returned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument
from threadline.registry.names import ModelRef, parse_model_uri

if TYPE_CHECKING:
    from collections.abc import Mapping

MODES = ("primary", "canary", "shadow")


@dataclass(frozen=True)
class Route:
    """One model a deployment sends traffic to.

    Attributes:
        name: unique within the deployment (`primary`, `canary`, `shadow`, or given).
        model: a model URI (`churn@3`, `churn@production`).
        weight: share of traffic (primary/canary, relative) or percent copied (shadow).
        mode: primary, canary or shadow.
    """

    name: str
    model: str
    weight: float
    mode: str

    @property
    def ref(self) -> ModelRef:
        """The parsed model URI."""
        return parse_model_uri(self.model)


@dataclass(frozen=True)
class Settings:
    """How a deployment serves: batching, admission control, cache, logging, trust."""

    #: most rows one model call takes; concurrent requests are merged up to it
    max_batch_size: int = 64
    #: longest a request waits for others to join its batch (only while the model is busy)
    max_wait_ms: float = 2.0
    #: requests being answered at once per worker; more wait in the queue
    max_concurrency: int = 128
    #: requests waiting beyond `max_concurrency`; more get 503 with Retry-After
    max_queue: int = 1024
    #: a request not answered within this many milliseconds gets 504
    deadline_ms: float = 5000.0
    #: requests per second one client may send (0: no limit); beyond it, 429 with Retry-After
    rate_limit: float = 0.0
    #: requests a client may send at once before the rate applies (default: one second's worth)
    rate_burst: int = 0
    #: request bodies above this many bytes get 413
    max_body: int = 8 << 20
    #: header whose value pins a caller to one route (canary stickiness)
    sticky_header: str = "x-threadline-key"
    #: convert models to ONNX Runtime when the conversion gives the same answers ("auto"|"off")
    onnx: str = "auto"
    #: seconds between checks for alias moves and spec changes
    refresh_s: float = 1.0
    #: result cache settings (see serving/cache.py): enabled, max_entries, max_bytes, ttl_s, redis_url
    cache: dict[str, Any] = field(default_factory=dict)
    #: share of requests written to the prediction log (0 turns it off)
    log_sample: float = 1.0
    #: longest a logged request waits in memory before it is committed
    log_flush_s: float = 5.0
    #: skops types to trust, and opt-ins for pickle and pyfunc code (see registry load_model)
    trusted: tuple[str, ...] = ()
    allow_pickle: bool = False
    allow_code: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        out = asdict(self)
        out["trusted"] = list(self.trusted)
        return out


@dataclass(frozen=True)
class Spec:
    """A deployment's routes and settings."""

    routes: tuple[Route, ...]
    settings: Settings

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the deployments table."""
        return {"routes": [asdict(r) for r in self.routes], "settings": self.settings.to_dict()}

    @property
    def serving(self) -> tuple[Route, ...]:
        """The routes that answer requests (primary and canary)."""
        return tuple(r for r in self.routes if r.mode != "shadow")

    @property
    def shadows(self) -> tuple[Route, ...]:
        """The routes that get a copy of traffic."""
        return tuple(r for r in self.routes if r.mode == "shadow")


def _number(value: Any, key: str, *, minimum: float, maximum: float | None = None,
            integer: bool = False) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or value < minimum or (maximum is not None and value > maximum):
        kind = "an integer" if integer else "a number"
        top = f" and at most {maximum:g}" if maximum is not None else ""
        raise InvalidArgument(f"setting {key} must be {kind} of at least {minimum:g}{top}, "
                              f"not {value!r}")
    return int(value) if integer else float(value)


_LIMITS: dict[str, tuple[float, float | None, bool]] = {
    "max_batch_size": (1, 100_000, True), "max_wait_ms": (0, 10_000, False),
    "max_concurrency": (1, 1_000_000, True), "max_queue": (0, 10_000_000, True),
    "deadline_ms": (1, 3_600_000, False), "max_body": (1024, 1 << 34, True),
    "refresh_s": (0.05, 3600, False), "log_sample": (0, 1, False),
    "log_flush_s": (0.05, 3600, False), "rate_limit": (0, 1e9, False),
    "rate_burst": (0, 1e9, True),
}


def parse_settings(raw: Mapping[str, Any] | None, base: Settings | None = None) -> Settings:
    """Settings from a mapping, over `base` (defaults when None); unknown keys are refused."""
    base = base or Settings()
    known = {f.name for f in fields(Settings)}
    values = base.to_dict()
    for key, value in (raw or {}).items():
        if key not in known:
            raise InvalidArgument(f"unknown setting {key!r}; the settings are {', '.join(sorted(known))}")
        if key in _LIMITS:
            low, high, integer = _LIMITS[key]
            values[key] = _number(value, key, minimum=low, maximum=high, integer=integer)
        elif key in ("allow_pickle", "allow_code"):
            if not isinstance(value, bool):
                raise InvalidArgument(f"setting {key} must be true or false, not {value!r}")
            values[key] = value
        elif key == "trusted":
            if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
                raise InvalidArgument("setting trusted must be a list of type names")
            values[key] = list(value)
        elif key == "onnx":
            if value not in ("auto", "off"):
                raise InvalidArgument(f"setting onnx must be 'auto' or 'off', not {value!r}")
            values[key] = value
        elif key == "sticky_header":
            if not isinstance(value, str) or not value or not value.replace("-", "").isalnum():
                raise InvalidArgument(f"setting sticky_header must be a header name, not {value!r}")
            values[key] = value.lower()
        elif key == "cache":
            if not isinstance(value, dict):
                raise InvalidArgument("setting cache must be a mapping (enabled, max_entries, "
                                      "max_bytes, ttl_s, redis_url)")
            values[key] = {**values["cache"], **value}
    values["trusted"] = tuple(values["trusted"])
    return Settings(**values)


def parse_routes(raw: Any) -> tuple[Route, ...]:
    """Routes from a list of mappings; checks modes, weights, names and that one serves."""
    if not isinstance(raw, list | tuple) or not raw:
        raise InvalidArgument("a deployment needs at least one route, e.g. "
                              "[{model: churn@production}]")
    routes: list[Route] = []
    counts: dict[str, int] = {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidArgument(f"route {index} must be a mapping with model, weight, mode")
        unknown = set(item) - {"name", "model", "weight", "mode"}
        if unknown:
            raise InvalidArgument(f"route {index} has unknown key {sorted(unknown)[0]!r}; "
                                  "a route has name, model, weight and mode")
        model = item.get("model")
        if not isinstance(model, str):
            raise InvalidArgument(f"route {index} needs model: NAME@VERSION or NAME@ALIAS")
        ref = parse_model_uri(model)
        mode = item.get("mode", "primary")
        if mode not in MODES:
            raise InvalidArgument(f"route {index} mode must be one of {', '.join(MODES)}, not {mode!r}")
        default_weight = 100.0
        weight = _number(item.get("weight", default_weight), f"route {index} weight",
                         minimum=0, maximum=100 if mode == "shadow" else 1e9)
        counts[mode] = counts.get(mode, 0) + 1
        name = item.get("name") or (mode if counts[mode] == 1 else f"{mode}-{counts[mode]}")
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise InvalidArgument(f"route {index} name must be letters, digits, '-' or '_', "
                                  f"not {name!r}")
        routes.append(Route(name=name, model=str(ref), weight=weight, mode=mode))
    names = [r.name for r in routes]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise InvalidArgument(f"two routes are named {duplicate!r}; give each a unique name")
    serving = [r for r in routes if r.mode != "shadow"]
    if not any(r.mode == "primary" for r in serving):
        raise InvalidArgument("a deployment needs a primary route; canary and shadow routes "
                              "only share or copy its traffic")
    if sum(r.weight for r in serving) <= 0:
        raise InvalidArgument("the primary and canary weights add up to 0; give one a weight")
    return tuple(routes)


def parse_spec(raw: Mapping[str, Any]) -> Spec:
    """A whole spec (`routes` and optional `settings`) from its JSON/YAML form."""
    unknown = set(raw) - {"routes", "settings"}
    if unknown:
        raise InvalidArgument(f"unknown deployment key {sorted(unknown)[0]!r}; a deployment "
                              "has routes and settings")
    return Spec(parse_routes(raw.get("routes")), parse_settings(raw.get("settings")))
