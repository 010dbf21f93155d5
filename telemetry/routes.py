"""Per-route configuration: owner team, SLOs, budgets, channels, severity routing, detector knobs.

One TOML file (``TELEMETRY_ROUTES_FILE``; ``deploy/routes.example.toml`` documents every key)::

    [defaults]            # applies to every route; every key optional
    [routes."<route>"]    # overrides for one route (same keys as [defaults])
    [teams.<team>]        # monthly_budget_usd, channels
    [channels.<name>]     # kind, url, routing_key, min_severity, headers

Every route works with no file at all (:meth:`RoutesConfig.load` with ``None``). Reading the file
is the only I/O here and happens once, at start-up; a bad file raises
:class:`telemetry.errors.ConfigError` whose message names the file, the table and the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from telemetry.alerting.channels import ChannelKind, WebhookChannel
from telemetry.contracts.alert import Severity
from telemetry.detect.names import (
    BUDGET_OVERRUN,
    COST_SPIKE,
    ERROR_STORM,
    LATENCY_SLO_BREACH,
    QUALITY_REGRESSION,
    RETRY_AMPLIFICATION,
    TEAM_ROUTE_PREFIX,
    TIER_SWITCH,
    TRAFFIC_STOPPED,
    TRUNCATION_SPIKE,
    AlertName,
)
from telemetry.errors import ConfigError

_MINUTE = 60_000
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_UNITS = {"ms": 1, "s": 1000, "m": _MINUTE, "h": _HOUR, "d": _DAY, "w": 7 * _DAY}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


def parse_duration_ms(value: object) -> int:
    """``"90s"``, ``"15m"``, ``"4h"``, ``"1h30m"``, ``"90d"`` or a number of seconds -> milliseconds.

    Raises ValueError on anything else (negative numbers included).
    """
    if isinstance(value, bool):
        raise ValueError("a duration is text like '15m' or a number of seconds")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return int(round(value * 1000))
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text in ("0", ""):
            return 0
        pos, total = 0, 0.0
        for match in _DURATION.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos == len(text) and pos > 0:
            return int(round(total))
    raise ValueError(f"{value!r} is not a duration (use e.g. '30s', '15m', '4h', '7d')")


Duration = Annotated[int, BeforeValidator(parse_duration_ms), Field(ge=0)]
"""A duration in the file (``"15m"`` or seconds), held in milliseconds."""

VerdictKind = Literal["online", "human", "user_feedback", "closed_book", "gold_context", "offline"]

DEFAULT_SEVERITY: dict[str, Severity] = {
    QUALITY_REGRESSION: "warning",
    COST_SPIKE: "warning",
    TIER_SWITCH: "warning",
    LATENCY_SLO_BREACH: "warning",
    ERROR_STORM: "critical",
    RETRY_AMPLIFICATION: "warning",
    TRUNCATION_SPIKE: "warning",
    BUDGET_OVERRUN: "warning",
    TRAFFIC_STOPPED: "warning",
}
"""Severity of each alert unless ``severity`` in [defaults] or the route says otherwise."""

DEFAULT_FOR_MS: dict[str, int] = {name: 0 for name in DEFAULT_SEVERITY}
"""Pending duration (Prometheus ``for``) per alert: 0 — every detector already confirms
(sequential test, two windows, exact test, minimum counts), and request-side alerts must
arrive within seconds of the deciding events."""

DEFAULT_KEEP_FIRING_MS: dict[str, int] = {
    QUALITY_REGRESSION: 0,
    COST_SPIKE: 15 * _MINUTE,
    TIER_SWITCH: 0,
    LATENCY_SLO_BREACH: 10 * _MINUTE,
    ERROR_STORM: 5 * _MINUTE,
    RETRY_AMPLIFICATION: 10 * _MINUTE,
    TRUNCATION_SPIKE: 15 * _MINUTE,
    BUDGET_OVERRUN: _HOUR,
    TRAFFIC_STOPPED: 0,
}
"""``keep_firing_for`` per alert: how long the condition must stay clear before the resolution
is sent (hysteresis against flapping on top of each detector's separate clear level)."""


class RoutePolicy(BaseModel):
    """Everything the detectors need to know about one route. Frozen; unknown keys are errors.

    Durations are milliseconds here (``"15m"`` in the file). ``severity``, ``for`` and
    ``keep_firing_for`` are tables keyed by alert name; use :meth:`severity_of`,
    :meth:`for_ms` and :meth:`keep_firing_ms`, which fall back to the built-in defaults.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # --- ownership and notification ------------------------------------------------------
    team: str | None = Field(None, description="Owner team; wins over the team events carry.")
    channels: tuple[str, ...] = Field((), description="Channel names; default: [defaults] channels.")
    severity: dict[AlertName, Severity] = Field(default_factory=dict)
    pending_for: dict[AlertName, Duration] = Field(default_factory=dict, alias="for")
    keep_firing_for: dict[AlertName, Duration] = Field(default_factory=dict)
    repeat_interval: Duration = Field(4 * _HOUR, description="Re-send a still-firing alert after this.")

    # --- QualityRegression ----------------------------------------------------------------
    quality_kinds: tuple[VerdictKind, ...] = ("online",)
    quality_min_verdicts: int = Field(200, ge=20, description="Baseline verdicts before it can alert.")
    quality_baseline_days: int = Field(7, ge=1, le=28)
    quality_drop: float = Field(0.10, gt=0, lt=1, description="Largest pass-rate drop to detect (points).")
    quality_error_ratio: float = Field(2.0, gt=1, description="...or this factor on the failure rate.")
    quality_false_alarms_per_month: float = Field(0.25, gt=0, description="Target; sets CUSUM h.")
    quality_h: float | None = Field(None, gt=0, description="Fixed CUSUM h; default: from the target.")
    quality_accept_after: Duration = Field(7 * _DAY, description="A regression this old becomes the baseline.")
    quality_baseline_lag: Duration = Field(6 * _HOUR, le=24 * _HOUR, description="Quarantine before the baseline.")

    # --- CostSpike ------------------------------------------------------------------------
    cost_fire_ratio: float = Field(1.5, gt=1)
    cost_clear_ratio: float = Field(1.2, ge=1)
    cost_short_window: Duration = 15 * _MINUTE
    cost_long_window: Duration = 60 * _MINUTE
    cost_min_requests: int = Field(20, ge=1)
    cost_noise_z: float = Field(4.0, ge=0)
    cost_min_baseline_hours: int = Field(12, ge=1)

    # --- TierSwitch -----------------------------------------------------------------------
    tier_min_ratio: float = Field(1.2, ge=1)
    tier_min_share: float = Field(0.2, gt=0, le=1)
    tier_min_requests: int = Field(10, ge=1)
    tier_window: Duration = 15 * _MINUTE
    tier_hold: Duration = _HOUR
    tier_history: Duration = 90 * _DAY
    tier_warmup: Duration = _HOUR

    # --- LatencySLOBreach -----------------------------------------------------------------
    latency_p95_ms: float = Field(10_000.0, ge=0, description="p95 target; 0 disables.")
    latency_p99_ms: float = Field(30_000.0, ge=0, description="p99 target; 0 disables.")
    latency_alpha: float = Field(1e-4, gt=0, lt=0.5)
    latency_min_ratio: float = Field(1.5, ge=1)
    latency_min_requests_p95: int = Field(100, ge=59)
    latency_min_requests_p99: int = Field(300, ge=299)
    latency_short_window: Duration = 15 * _MINUTE
    latency_long_window: Duration = 60 * _MINUTE

    # --- ErrorStorm -----------------------------------------------------------------------
    storm_min_errors: int = Field(5, ge=1)
    storm_min_share: float = Field(0.2, gt=0, le=1)
    storm_clear_share: float = Field(0.1, ge=0, le=1)
    storm_alpha: float = Field(1e-6, gt=0, lt=0.5)
    storm_clear_window: Duration = 10 * _MINUTE
    storm_window: Duration = 2 * _MINUTE
    inhibit_hold: Duration = 15 * _MINUTE

    # --- RetryAmplification ---------------------------------------------------------------
    retry_budget: float = Field(1.5, gt=1)
    retry_clear: float = Field(1.2, ge=1)
    retry_window: Duration = 10 * _MINUTE
    retry_min_requests: int = Field(20, ge=1)

    # --- TruncationSpike ------------------------------------------------------------------
    truncation_ratio: float = Field(2.0, gt=1)
    truncation_min_increase: float = Field(0.05, ge=0, le=1)
    truncation_min_count: int = Field(10, ge=1)
    truncation_window: Duration = 15 * _MINUTE
    truncation_alpha: float = Field(1e-6, gt=0, lt=0.5)
    truncation_min_baseline: int = Field(1000, ge=1)

    # --- TrafficStopped -------------------------------------------------------------------
    silence_window: Duration = 10 * _MINUTE
    silence_baseline_window: Duration = 50 * _MINUTE
    silence_alpha: float = Field(1e-6, ge=0, lt=0.5, description="0 turns TrafficStopped off for the route.")

    # --- BudgetOverrun --------------------------------------------------------------------
    monthly_budget_usd: float | None = Field(None, gt=0)
    budget_clear_ratio: float = Field(0.9, gt=0, le=1)
    budget_min_span: Duration = 6 * _HOUR

    @model_validator(mode="after")
    def _coherent(self) -> RoutePolicy:
        windows = {
            "cost_short_window": self.cost_short_window,
            "cost_long_window": self.cost_long_window,
            "tier_window": self.tier_window,
            "latency_short_window": self.latency_short_window,
            "latency_long_window": self.latency_long_window,
            "storm_window": self.storm_window,
            "storm_clear_window": self.storm_clear_window,
            "retry_window": self.retry_window,
            "truncation_window": self.truncation_window,
            "silence_window": self.silence_window,
            "silence_baseline_window": self.silence_baseline_window,
        }
        for name, ms in windows.items():
            if ms % _MINUTE or not _MINUTE <= ms <= 60 * _MINUTE:
                raise ValueError(f"{name} must be whole minutes between 1m and 60m")
        if self.cost_short_window > self.cost_long_window:
            raise ValueError("cost_short_window must not be longer than cost_long_window")
        if self.latency_short_window > self.latency_long_window:
            raise ValueError("latency_short_window must not be longer than latency_long_window")
        if self.cost_clear_ratio > self.cost_fire_ratio:
            raise ValueError("cost_clear_ratio must not exceed cost_fire_ratio")
        if self.retry_clear > self.retry_budget:
            raise ValueError("retry_clear must not exceed retry_budget")
        if self.storm_clear_share > self.storm_min_share:
            raise ValueError("storm_clear_share must not exceed storm_min_share")
        if self.latency_p95_ms and self.latency_p99_ms and self.latency_p99_ms < self.latency_p95_ms:
            raise ValueError("latency_p99_ms must not be below latency_p95_ms")
        if not self.quality_kinds:
            raise ValueError("quality_kinds must name at least one verdict kind")
        return self

    def severity_of(self, alertname: str) -> Severity:
        """The severity label of ``alertname`` on this route."""
        configured = cast(dict[str, Severity], self.severity).get(alertname)
        return configured or DEFAULT_SEVERITY.get(alertname, "warning")

    def for_ms(self, alertname: str) -> int:
        """Pending duration before ``alertname`` fires (0 = fires on the deciding evaluation)."""
        configured = cast(dict[str, int], self.pending_for).get(alertname)
        return DEFAULT_FOR_MS.get(alertname, 0) if configured is None else configured

    def keep_firing_ms(self, alertname: str) -> int:
        """How long ``alertname`` must stay clear before it resolves."""
        configured = cast(dict[str, int], self.keep_firing_for).get(alertname)
        return DEFAULT_KEEP_FIRING_MS.get(alertname, 0) if configured is None else configured


class TeamPolicy(BaseModel):
    """``[teams.<name>]``: a team's monthly budget and where its team-level alerts go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    monthly_budget_usd: float | None = Field(None, gt=0)
    channels: tuple[str, ...] | None = None


class _ChannelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ChannelKind
    url: str = Field(pattern=r"^https?://\S+$")
    routing_key: str = ""
    min_severity: Severity = "info"
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _pagerduty_key(self) -> _ChannelSpec:
        if self.kind == "pagerduty" and not self.routing_key:
            raise ValueError("a pagerduty channel needs routing_key")
        return self


_MERGED_TABLES = ("severity", "for", "keep_firing_for")
_TOP_LEVEL = ("defaults", "routes", "teams", "channels")


@dataclass(frozen=True)
class RoutesConfig:
    """The parsed routes file. Frozen; build a new one to change it.

    ``defaults`` applies to every route without its own table; ``routes`` holds the merged
    policy of each configured route (its keys over [defaults]; the ``severity``, ``for`` and
    ``keep_firing_for`` tables are merged key by key).
    """

    defaults: RoutePolicy = field(default_factory=lambda: RoutePolicy.model_validate({}))
    default_team: str = ""
    routes: Mapping[str, RoutePolicy] = field(default_factory=dict)
    teams: Mapping[str, TeamPolicy] = field(default_factory=dict)
    channels: dict[str, WebhookChannel] = field(default_factory=dict)
    source: Path | None = None

    # --- building ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | None) -> RoutesConfig:
        """Read the routes file; ``None`` gives all defaults. Raises ConfigError on a bad file."""
        if path is None:
            return cls()
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"routes file {path}: cannot be read ({exc.strerror or exc})") from exc
        return cls.from_toml(text, source=Path(path))

    @classmethod
    def from_toml(cls, text: str, source: Path | None = None) -> RoutesConfig:
        """Parse TOML text (see the module docstring). Raises ConfigError."""
        where = f"routes file {source}" if source else "routes config"
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from exc
        return cls.from_mapping(data, source=source)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: Path | None = None) -> RoutesConfig:
        """Build from an already-parsed mapping (the TOML document). Raises ConfigError."""
        where = f"routes file {source}" if source else "routes config"
        unknown = sorted(set(data) - set(_TOP_LEVEL))
        if unknown:
            raise ConfigError(f"{where}: unknown table(s) {unknown}; expected {list(_TOP_LEVEL)}")
        raw_defaults = _table(data, "defaults", where)
        default_team = raw_defaults.get("team", "")
        if not isinstance(default_team, str):
            raise ConfigError(f"{where}: [defaults] team must be a string")
        defaults_fields = {k: v for k, v in raw_defaults.items() if k != "team"}
        defaults = _policy(defaults_fields, where, "[defaults]")

        routes: dict[str, RoutePolicy] = {}
        for route, raw in _table(data, "routes", where).items():
            if not isinstance(raw, Mapping):
                raise ConfigError(f'{where}: [routes."{route}"] must be a table')
            if route.startswith(TEAM_ROUTE_PREFIX):
                raise ConfigError(f'{where}: [routes."{route}"]: route names cannot start with "team:"')
            merged = dict(defaults_fields)
            merged.update(raw)
            for key in _MERGED_TABLES:
                if key in raw and key in defaults_fields:
                    base = defaults_fields[key]
                    over = raw[key]
                    if isinstance(base, Mapping) and isinstance(over, Mapping):
                        merged[key] = {**base, **over}
            routes[route] = _policy(merged, where, f'[routes."{route}"]')

        teams: dict[str, TeamPolicy] = {}
        for team, raw in _table(data, "teams", where).items():
            try:
                teams[team] = TeamPolicy.model_validate(raw)
            except ValidationError as exc:
                raise ConfigError(f"{where}: [teams.{team}]: {_explain(exc)}") from exc

        channels: dict[str, WebhookChannel] = {}
        for name, raw in _table(data, "channels", where).items():
            try:
                spec = _ChannelSpec.model_validate(raw)
            except ValidationError as exc:
                raise ConfigError(f"{where}: [channels.{name}]: {_explain(exc)}") from exc
            channels[name] = WebhookChannel(
                name=name,
                kind=spec.kind,
                url=spec.url,
                routing_key=spec.routing_key,
                min_severity=spec.min_severity,
                headers=dict(spec.headers),
            )

        referenced = [("[defaults]", defaults.channels)]
        referenced += [(f'[routes."{r}"]', p.channels) for r, p in routes.items()]
        referenced += [(f"[teams.{t}]", p.channels or ()) for t, p in teams.items()]
        for table, names in referenced:
            missing = [n for n in names if n not in channels]
            if missing:
                raise ConfigError(
                    f"{where}: {table} channels names undefined channel(s) {missing}; "
                    f"declare them as [channels.<name>] (defined: {sorted(channels)})"
                )
        return cls(
            defaults=defaults,
            default_team=default_team,
            routes=routes,
            teams=teams,
            channels=channels,
            source=source,
        )

    # --- queries ----------------------------------------------------------------------------
    def for_route(self, route: str) -> RoutePolicy:
        """The policy of ``route``: its own table merged over [defaults], or [defaults]."""
        return self.routes.get(route, self.defaults)

    def team_for(self, route: str, observed: str = "") -> str:
        """Owner team: the route's ``team`` key, else the team events carry, else [defaults] team."""
        configured = self.for_route(route).team
        if configured:
            return configured
        return observed or self.default_team

    def team_budget(self, team: str) -> float | None:
        """Monthly budget of ``team`` in USD, or None when not configured."""
        policy = self.teams.get(team)
        return policy.monthly_budget_usd if policy else None

    def channels_for(self, route: str, severity: str) -> list[WebhookChannel]:
        """Channels an alert of ``route`` at ``severity`` goes to, in configured order.

        A route label ``team:<name>`` (team budget alerts) uses that team's channels when set.
        Channels whose ``min_severity`` is above ``severity`` are left out; an unknown
        severity is sent everywhere.
        """
        names: tuple[str, ...]
        if route.startswith(TEAM_ROUTE_PREFIX):
            team = self.teams.get(route[len(TEAM_ROUTE_PREFIX) :])
            names = team.channels if team and team.channels is not None else self.defaults.channels
        else:
            names = self.for_route(route).channels
        rank = SEVERITY_RANK.get(severity, max(SEVERITY_RANK.values()))
        chosen = []
        for name in names:
            channel = self.channels.get(name)
            if channel is not None and rank >= SEVERITY_RANK.get(channel.min_severity, 0):
                chosen.append(channel)
        return chosen


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _policy(raw: Mapping[str, Any], where: str, table: str) -> RoutePolicy:
    try:
        return RoutePolicy.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {table}: {_explain(exc)}") from exc


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(table)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against deploy/routes.example.toml)"
        elif err["type"] == "literal_error" and len(err["loc"]) >= 2 and err["loc"][0] in _MERGED_TABLES:
            msg = f"unknown alert name; expected one of {list(get_args(AlertName))}"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)
