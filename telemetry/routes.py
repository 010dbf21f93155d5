"""Per-route configuration: owner team, SLOs, budgets, channels, severity routing, detector knobs.

One TOML file (``TELEMETRY_ROUTES_FILE``; ``deploy/routes.example.toml`` documents every key)::

    [defaults]            # applies to every route; every key optional
    [routes."<route>"]    # overrides for one route (same keys as [defaults])
    [routes."<route>".canary]  # a canary with criteria (model, share, criteria; see telemetry.detect.canary)
    [teams.<team>]        # monthly_budget_usd, channels
    [channels.<name>]     # kind, url, routing_key, min_severity, headers

Every route works with no file at all (:meth:`RoutesConfig.load` with ``None``). Reading the file
is the only I/O here and happens once, at start-up; a bad file raises
:class:`telemetry.errors.ConfigError` whose message names the file, the table and the key.

A route's table is flat, but its keys have owners: ownership and notification keys are this
module's (:class:`RoutePolicy`); every detector key belongs to the section of the detector that
reads it (:attr:`telemetry.detect.detector.Detector.policy`, e.g. ``cost_*`` to CostSpike's), and
the sections are those of the registered detectors (:data:`telemetry.detect.registry.DETECTORS`),
as are the alert names and their default severity and ``keep_firing_for``. This module imports
the detection package; the detection core reads the result through read-only views
(:mod:`telemetry.detect.policy`) and never imports this module.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic_core import ErrorDetails

from telemetry.alerting.channels import ChannelKind, WebhookChannel
from telemetry.contracts.alert import Severity
from telemetry.detect.names import ALERT_NAMES, TEAM_ROUTE_PREFIX
from telemetry.detect.policy import Duration, PolicySection, parse_duration_ms
from telemetry.detect.registry import DETECTORS, SECTIONS
from telemetry.errors import ConfigError

__all__ = [
    "DEFAULT_FOR_MS",
    "DEFAULT_KEEP_FIRING_MS",
    "DEFAULT_SEVERITY",
    "SEVERITY_RANK",
    "AlertKey",
    "PolicyError",
    "Duration",
    "RoutePolicy",
    "RoutesConfig",
    "TeamPolicy",
    "parse_duration_ms",
]

_MINUTE = 60_000
_HOUR = 60 * _MINUTE
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}

DEFAULT_SEVERITY: dict[str, Severity] = {d.alertname: d.severity for d in DETECTORS}
"""Severity of each alert unless ``severity`` in [defaults] or the route says otherwise
(each detector's :attr:`~telemetry.detect.detector.Detector.severity`)."""

DEFAULT_FOR_MS: dict[str, int] = {name: 0 for name in DEFAULT_SEVERITY}
"""Pending duration (Prometheus ``for``) per alert: 0 — every detector already confirms
(sequential test, two windows, exact test, minimum counts), and request-side alerts must
arrive within seconds of the deciding events."""

DEFAULT_KEEP_FIRING_MS: dict[str, int] = {d.alertname: d.keep_firing_ms for d in DETECTORS}
"""``keep_firing_for`` per alert: how long the condition must stay clear before the resolution
is sent (hysteresis against flapping on top of each detector's separate clear level); each
detector's :attr:`~telemetry.detect.detector.Detector.keep_firing_ms`."""

_SECTION_OF_KEY: dict[str, type[PolicySection]] = {key: kind for kind in SECTIONS for key in kind.model_fields}
"""Which detector's section each detector key of the file belongs to."""

S = TypeVar("S", bound=PolicySection)


class PolicyError(ValueError):
    """A route table with problems: ``errors`` as pydantic reports them, from every part."""

    def __init__(self, errors: list[ErrorDetails]) -> None:
        super().__init__(_explain(errors))
        self.errors = errors


def _known_alert(name: str) -> str:
    if name not in DEFAULT_SEVERITY:
        raise ValueError("unknown alert name")
    return name


AlertKey = Annotated[str, AfterValidator(_known_alert)]
"""A key of the severity / for / keep_firing_for tables: a registered detector's alert name."""


class RoutePolicy(BaseModel):
    """Everything the detectors need to know about one route. Frozen; unknown keys are errors.

    The fields of this class are the route's ownership and notification keys; every other key of
    a route's table belongs to one registered detector's section
    (:attr:`telemetry.detect.detector.Detector.policy`), read with :meth:`section`
    (``policy.section(LatencyPolicy).latency_p95_ms``). :meth:`from_table` builds one from a
    flat table of the file.

    Durations are milliseconds here (``"15m"`` in the file). ``severity``, ``for`` and
    ``keep_firing_for`` are tables keyed by alert name; use :meth:`severity_of`,
    :meth:`for_ms` and :meth:`keep_firing_ms`, which fall back to the built-in defaults.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # --- ownership and notification ------------------------------------------------------
    team: str | None = Field(None, description="Owner team; wins over the team events carry.")
    channels: tuple[str, ...] = Field((), description="Channel names; default: [defaults] channels.")
    severity: dict[AlertKey, Severity] = Field(default_factory=dict)
    pending_for: dict[AlertKey, Duration] = Field(default_factory=dict, alias="for")
    keep_firing_for: dict[AlertKey, Duration] = Field(default_factory=dict)
    repeat_interval: Duration = Field(4 * _HOUR, description="Re-send a still-firing alert after this.")

    # --- the detectors' sections, one per registered detector (set by from_table) --------------
    _sections: dict[type[PolicySection], PolicySection] = PrivateAttr(
        default_factory=lambda: {kind: kind() for kind in SECTIONS}
    )

    @classmethod
    def from_table(cls, raw: Mapping[str, Any]) -> RoutePolicy:
        """The policy of one flat table: this class's keys, and each detector's keys to its section.

        Raises :class:`PolicyError` with the problems of every part.
        """
        errors: list[ErrorDetails] = []
        try:
            policy = cls.model_validate({k: v for k, v in raw.items() if k not in _SECTION_OF_KEY})
        except ValidationError as exc:
            errors.extend(exc.errors(include_url=False))
        sections: dict[type[PolicySection], PolicySection] = {}
        for kind in SECTIONS:
            try:
                sections[kind] = kind.model_validate({k: v for k, v in raw.items() if _SECTION_OF_KEY.get(k) is kind})
            except ValidationError as exc:
                errors.extend(exc.errors(include_url=False))
        if errors:
            raise PolicyError(errors)
        policy._sections = sections
        return policy

    @cached_property
    def sections(self) -> Mapping[type[PolicySection], PolicySection]:
        """Every registered detector's section of this route's policy, by section class.

        (Cached in the instance: reading a private attribute goes through pydantic's
        ``__getattr__``, and the engine reads sections per route at every evaluation.)
        """
        return self._sections

    def section(self, kind: type[S]) -> S:
        """This route's section ``kind`` (e.g. ``policy.section(LatencyPolicy).latency_p95_ms``)."""
        return cast(S, self.sections[kind])

    def severity_of(self, alertname: str) -> Severity:
        """The severity label of ``alertname`` on this route."""
        configured = self.severity.get(alertname)
        return configured or DEFAULT_SEVERITY.get(alertname, "warning")

    def for_ms(self, alertname: str) -> int:
        """Pending duration before ``alertname`` fires (0 = fires on the deciding evaluation)."""
        configured = self.pending_for.get(alertname)
        return DEFAULT_FOR_MS.get(alertname, 0) if configured is None else configured

    def keep_firing_ms(self, alertname: str) -> int:
        """How long ``alertname`` must stay clear before it resolves."""
        configured = self.keep_firing_for.get(alertname)
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

    defaults: RoutePolicy = field(default_factory=RoutePolicy)
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
        _check_canary(defaults_fields.get("canary"), where, "[defaults]", in_defaults=True)
        defaults = _policy(defaults_fields, where, "[defaults]")

        routes: dict[str, RoutePolicy] = {}
        for route, raw in _table(data, "routes", where).items():
            if not isinstance(raw, Mapping):
                raise ConfigError(f'{where}: [routes."{route}"] must be a table')
            if route.startswith(TEAM_ROUTE_PREFIX):
                raise ConfigError(f'{where}: [routes."{route}"]: route names cannot start with "team:"')
            _check_canary(raw.get("canary"), where, f'[routes."{route}"]', in_defaults=False)
            merged = dict(defaults_fields)
            merged.update(raw)
            for key in (*_MERGED_TABLES, "canary"):
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
                raise ConfigError(f"{where}: [teams.{team}]: {_explain(exc.errors(include_url=False))}") from exc

        channels: dict[str, WebhookChannel] = {}
        for name, raw in _table(data, "channels", where).items():
            try:
                spec = _ChannelSpec.model_validate(raw)
            except ValidationError as exc:
                raise ConfigError(f"{where}: [channels.{name}]: {_explain(exc.errors(include_url=False))}") from exc
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


_CANARY_RUN_KEYS = ("model", "share", "percentage", "start")
"""Keys of one canary run: a route's ``canary`` table must name the model; [defaults] holds
only what every route's canary shares (criteria, deadline, alpha, ...)."""


def _check_canary(raw: object, where: str, table: str, *, in_defaults: bool) -> None:
    """The canary table of ``table``, beyond its section's own validation (the key is merged
    key by key over [defaults]): a canary is declared per route, with its model."""
    if raw is None:
        return
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{where}: {table}: canary must be a table, e.g. [routes."<route>".canary] '
                          'with model, share and criteria')  # fmt: skip
    if in_defaults:
        found = [k for k in _CANARY_RUN_KEYS if k in raw]
        if found:
            raise ConfigError(f"{where}: {table}: canary.{found[0]}: a canary is declared per route "
                              f'([routes."<route>".canary]); [defaults] canary only holds shared keys '
                              f"(criteria, deadline, alpha, hold, kinds, ...)")  # fmt: skip
    elif not raw.get("model"):
        raise ConfigError(f"{where}: {table}: canary.model: a canary names its model, e.g. "
                          f'canary = {{ model = "gpt-4.1-mini", share = 0.05, criteria = ["p95_latency_ms < 300"] }}')  # fmt: skip


def _policy(raw: Mapping[str, Any], where: str, table: str) -> RoutePolicy:
    try:
        return RoutePolicy.from_table(raw)
    except PolicyError as exc:
        raise ConfigError(f"{where}: {table}: {exc}") from exc


def _explain(errors: list[ErrorDetails]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"]) or "(table)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against deploy/routes.example.toml)"
        elif err["loc"][:1] and err["loc"][0] in _MERGED_TABLES and err["loc"][-1] == "[key]":
            msg = f"unknown alert name; expected one of {list(ALERT_NAMES)}"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)
