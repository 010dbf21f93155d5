"""Scenario files of the traffic simulator: what traffic to generate and which incidents to seed.

A scenario is a TOML file (read with the standard library's ``tomllib``) with four parts:
``[scenario]`` (name, seed, simulated start and duration), ``[[route]]`` (one table per route:
team, provider, model, rates, latency and token distributions, quality, judging, errors),
``[noise]`` (duplicates, early verdicts, malformed input) and ``[[incident]]`` (incidents seeded
at a time on a route). ``[route_defaults]`` holds values shared by every route. The format is
documented field by field on the models below and in ``docs`` (see the simulator section).

Pure: parsing and validation only, no I/O besides reading the file you name.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from telemetry.contracts._time import to_epoch_ms
from telemetry.contracts.verdict import VerdictKind
from telemetry.errors import ConfigError

__all__ = [
    "ALERTNAMES",
    "EXPECTED_ALERTS",
    "IncidentKind",
    "IncidentWindow",
    "Route",
    "Scenario",
    "ScenarioError",
    "bundled_scenarios",
    "check_prices",
    "describe_scenario",
    "load_scenario",
    "parse_duration_ms",
    "parse_scenario",
]


class ScenarioError(ConfigError):
    """A scenario file cannot be read or is invalid. The message says where and why."""


# --------------------------------------------------------------------------------------
# Alert names the worker raises, and which ones each incident kind should trigger.
# --------------------------------------------------------------------------------------

ALERTNAMES: frozenset[str] = frozenset(
    {
        "QualityRegression",
        "CostSpike",
        "TierSwitch",
        "LatencySLOBreach",
        "ErrorStorm",
        "RetryAmplification",
        "TruncationSpike",
        "CanaryVerdict",
        "JudgeDrift",
    }
)

IncidentKind = Literal[
    "quality_drop",
    "silent_tier_up",
    "alias_404_storm",
    "latency_regression",
    "retry_storm",
    "truncation_spike",
    "canary",
    "judge_drift",
]

EXPECTED_ALERTS: dict[str, tuple[str, ...]] = {
    "quality_drop": ("QualityRegression",),
    "silent_tier_up": ("TierSwitch", "CostSpike"),
    "alias_404_storm": ("ErrorStorm",),
    "latency_regression": ("LatencySLOBreach",),
    "retry_storm": ("RetryAmplification",),
    "truncation_spike": ("TruncationSpike",),
    "canary": ("CanaryVerdict",),
    "judge_drift": ("JudgeDrift",),
}
"""Incident kind -> alert names that detect it (any one of them firing on the route counts)."""


# --------------------------------------------------------------------------------------
# Durations and instants
# --------------------------------------------------------------------------------------

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)", re.IGNORECASE)


def parse_duration_ms(value: object) -> int:
    """Milliseconds of ``"90s"``, ``"15m"``, ``"6h"``, ``"1h30m"``, ``"250ms"``, ``"1d"``; a bare
    number is seconds. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '15m' or a number of seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("a duration must be a finite number of seconds >= 0")
        return int(round(value * 1000))
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if not text:
            raise ValueError("empty duration")
        pos, total = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_MS[match.group(2).lower()]
            pos = match.end()
        if pos != len(text) or pos == 0:
            try:
                return parse_duration_ms(float(text))
            except ValueError:
                raise ValueError(f"duration {value!r}: use e.g. '90s', '15m', '6h', '1h30m', '250ms'") from None
        return int(round(total))
    raise ValueError("a duration is a string like '15m' or a number of seconds")


DurationMs = Annotated[int, BeforeValidator(parse_duration_ms)]
EpochMsField = Annotated[int, BeforeValidator(to_epoch_ms)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


def _offset_or_instant(value: object) -> object:
    """``at`` of an incident: a duration after the scenario start (``"6h30m"``) or an instant."""
    if isinstance(value, datetime):
        return ("abs", to_epoch_ms(value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ("rel", parse_duration_ms(value))
    if isinstance(value, str):
        text = value.strip()
        try:
            return ("rel", parse_duration_ms(text.lstrip("+")))
        except ValueError:
            return ("abs", to_epoch_ms(text))
    if isinstance(value, tuple):
        return value
    raise ValueError("'at' is a duration after the scenario start ('6h30m') or an RFC 3339 time")


# --------------------------------------------------------------------------------------
# Route
# --------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogNormal(_Model):
    """A log-normal distribution given by its median and the sigma of its logarithm.

    p95 = median * exp(1.645 * sigma); sigma 0.3 is tight, 1.0 is wide.
    """

    median: float = Field(gt=0)
    sigma: float = Field(default=0.5, ge=0, le=5)

    @property
    def mu(self) -> float:
        return math.log(self.median)

    def quantile(self, q: float) -> float:
        from statistics import NormalDist

        return self.median * math.exp(self.sigma * NormalDist().inv_cdf(q))

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)


class JudgeDelay(_Model):
    """Delay from the end of a request to its verdict: a log-normal body plus a log-normal tail
    (e.g. a batch judge or a human queue), clipped to ``[min, max]``."""

    median: DurationMs = Field(default=60_000, gt=0, description="Median delay of the body.")
    sigma: float = Field(default=1.0, ge=0, le=5)
    tail_fraction: Fraction = Field(default=0.05, description="Share of verdicts drawn from the tail.")
    tail_median: DurationMs = Field(default=3_600_000, gt=0)
    tail_sigma: float = Field(default=0.6, ge=0, le=5)
    min: DurationMs = Field(default=500)
    max: DurationMs = Field(default=6 * 3_600_000, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> JudgeDelay:
        if self.min > self.max:
            raise ValueError("judge_delay.min exceeds judge_delay.max")
        return self


class Route(_Model):
    """One route: a feature calling one model, with its traffic, latency, tokens and quality."""

    name: str = Field(min_length=1, max_length=256, description="Route name, e.g. support.answer.")
    team: str = Field(default="", max_length=256)
    provider: str = Field(min_length=1, max_length=128, description="genai-prices provider id: openai, ...")
    model: str = Field(min_length=1, max_length=256, description="Requested model (priced by genai-prices).")
    response_model: str = Field(default="", max_length=256, description="Served model; default: same as model.")

    # arrivals
    peak_rps: float = Field(gt=0, le=100_000, description="Requests per second at the daily peak.")
    shape: Literal["diurnal", "flat", "hourly"] = "diurnal"
    min_fraction: float = Field(default=0.3, gt=0, le=1, description="Diurnal trough rate / peak rate.")
    peak_hour: float = Field(default=14.0, ge=0, lt=24, description="Hour (UTC, of the declared start) of the peak.")
    hourly: list[float] | None = Field(default=None, description="24 relative rates (shape = 'hourly').")

    # latency and tokens
    latency_ms: LogNormal = LogNormal(median=800, sigma=0.4)
    ttft_ms: LogNormal | None = Field(default=None, description="Time to first token; omit for non-streaming.")
    input_tokens: LogNormal = LogNormal(median=800, sigma=0.6)
    output_tokens: LogNormal = LogNormal(median=200, sigma=0.7)
    system_prompt_tokens: int = Field(default=0, ge=0, le=1_000_000, description="Added to every input.")
    cache_hit_rate: Fraction = Field(default=0.0, description="Share of requests whose system prompt is cached.")
    max_output_tokens: int | None = Field(default=None, ge=1, description="Output cap; longer outputs are truncated.")
    truncation_rate: Fraction = Field(default=0.005, description="Share of ok requests ending with 'length'.")

    # quality and judging
    pass_rate: Fraction = 0.9
    judged_fraction: Fraction = 0.1
    judge_delay: JudgeDelay = JudgeDelay()
    evaluator: str = Field(default="quality@v1", min_length=1, max_length=256, description="name@version.")
    evaluator_kind: VerdictKind = "online"
    eval_cost_usd: float | None = Field(default=None, ge=0)
    prompt_version: str = Field(default="v1", max_length=256)
    human_fraction: Fraction = Field(default=0.0, description="Share of ok requests a human also labels.")
    human_evaluator: str = Field(default="human@v1", min_length=1, max_length=256)
    judge_agreement: Fraction = Field(default=0.95, description="How often a human label equals the judge's verdict.")
    experiment: str = Field(default="", max_length=256, description="Experiment arm of the route's own traffic.")

    # errors and retries
    error_rate: Fraction = Field(default=0.002, description="Per-attempt failure probability (429/5xx/timeout).")
    retry_rate: Fraction = Field(default=0.5, description="Share of failed attempts that the client retries.")
    max_attempts: int = Field(default=3, ge=1, le=20)

    users: int = Field(default=5000, ge=1, description="Distinct user_hash values.")
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shape(self) -> Route:
        if self.shape == "hourly":
            if not self.hourly or len(self.hourly) != 24:
                raise ValueError("shape = 'hourly' needs hourly = [24 numbers]")
            if min(self.hourly) < 0 or max(self.hourly) <= 0:
                raise ValueError("hourly rates must be >= 0 with at least one > 0")
        elif self.hourly is not None:
            raise ValueError("hourly is only used with shape = 'hourly'")
        return self

    @property
    def served_model(self) -> str:
        return self.response_model or self.model

    def shape_factor(self, hour_of_day: float) -> float:
        """Rate at ``hour_of_day`` (UTC, 0..24) relative to ``peak_rps``, in (0, 1]."""
        if self.shape == "flat":
            return 1.0
        if self.shape == "diurnal":
            wave = 0.5 * (1.0 + math.cos(2.0 * math.pi * (hour_of_day - self.peak_hour) / 24.0))
            return self.min_fraction + (1.0 - self.min_fraction) * wave
        assert self.hourly is not None
        top = max(self.hourly)
        lo = int(hour_of_day) % 24
        frac = hour_of_day - math.floor(hour_of_day)
        return (self.hourly[lo] * (1.0 - frac) + self.hourly[(lo + 1) % 24] * frac) / top


# --------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------


class Noise(_Model):
    """Imperfections of real pipelines."""

    request_duplicate_fraction: Fraction = Field(default=0.005, description="Requests published twice.")
    verdict_duplicate_fraction: Fraction = Field(default=0.01, description="Verdicts published twice.")
    early_verdict_fraction: Fraction = Field(default=0.02, description="Verdicts published before their request.")
    malformed_fraction: Fraction = Field(default=0.001, description="Extra invalid messages, per valid message.")
    duplicate_delay_max: DurationMs = Field(default=120_000, gt=0, description="A duplicate follows within this.")
    early_by_max: DurationMs = Field(default=5_000, gt=0, description="How far ahead an early verdict may be.")


# --------------------------------------------------------------------------------------
# Incidents
# --------------------------------------------------------------------------------------


class _IncidentBase(_Model):
    name: str = Field(default="", max_length=256, description="Label of the incident; default kind@route.")
    route: str = Field(min_length=1)
    at: Annotated[tuple[str, int], BeforeValidator(_offset_or_instant)] = Field(
        description="Start: duration after the scenario start ('6h30m') or an RFC 3339 time."
    )
    duration: DurationMs = Field(gt=0)
    expect: list[str] | None = Field(default=None, description="Alert names to expect; default by kind.")

    @model_validator(mode="after")
    def _expect_known(self) -> _IncidentBase:
        unknown = sorted(set(self.expect or ()) - ALERTNAMES)
        if unknown:
            raise ValueError(f"unknown alert names in expect: {unknown}; known: {sorted(ALERTNAMES)}")
        return self

    @property
    def expected_alertnames(self) -> tuple[str, ...]:
        return tuple(self.expect) if self.expect else EXPECTED_ALERTS[self.kind]  # type: ignore[attr-defined]

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}@{self.route}"  # type: ignore[attr-defined]


class QualityDrop(_IncidentBase):
    """A prompt regression: the pass rate falls (to ``pass_rate`` or by ``pass_rate_delta``) and,
    if given, a new ``prompt_version`` is reported."""

    kind: Literal["quality_drop"]
    pass_rate: Fraction | None = None
    pass_rate_delta: float = Field(default=-0.10, ge=-1, le=1)
    prompt_version: str | None = None


class SilentTierUp(_IncidentBase):
    """The route is silently served by a pricier ``model`` (reported as ``response_model``; the
    requested ``model`` stays unless ``requested_model`` is set); quality rises a little."""

    kind: Literal["silent_tier_up"]
    model: str = Field(min_length=1, description="The pricier served model.")
    provider: str | None = Field(default=None, description="Provider of that model; default: the route's.")
    requested_model: str | None = Field(default=None, description="Also change the requested model (not silent).")
    pass_rate_delta: float = Field(default=0.01, ge=-1, le=1)
    latency_factor: float = Field(default=1.0, gt=0)


class Alias404Storm(_IncidentBase):
    """A model alias that the provider does not know: requests for ``alias`` fail fast with
    ``status=error, error_type=model_not_found, http_status=404`` (``error_fraction`` of them)."""

    kind: Literal["alias_404_storm"]
    alias: str | None = Field(default=None, description="The unknown alias; default: '<model>-v2'.")
    error_fraction: Fraction = 1.0
    latency_ms: LogNormal = LogNormal(median=60, sigma=0.3)
    error_type: str = "model_not_found"
    http_status: int = Field(default=404, ge=100, le=999)


class LatencyRegression(_IncidentBase):
    """Latency (and time to first token) multiplied by ``latency_factor`` (``ttft_factor``)."""

    kind: Literal["latency_regression"]
    latency_factor: float = Field(default=3.0, gt=0)
    ttft_factor: float | None = Field(default=None, gt=0, description="Default: latency_factor.")


class RetryStorm(_IncidentBase):
    """Each attempt fails with ``failure_rate`` (429 rate_limited) and is retried up to
    ``max_attempts``: attempts per logical request = (1 - f^n) / (1 - f)."""

    kind: Literal["retry_storm"]
    failure_rate: Fraction = 0.5
    max_attempts: int = Field(default=4, ge=2, le=20)
    error_type: str = "rate_limited"
    http_status: int = Field(default=429, ge=100, le=999)
    latency_ms: LogNormal = LogNormal(median=80, sigma=0.4)

    @property
    def amplification(self) -> float:
        f, n = self.failure_rate, self.max_attempts
        return float(n) if f >= 1 else (1 - f**n) / (1 - f)


class TruncationSpike(_IncidentBase):
    """``truncation_rate`` of ok requests end with ``finish_reason=length`` (outputs cut at
    ``max_output_tokens`` when given), e.g. after someone lowered max_tokens."""

    kind: Literal["truncation_spike"]
    truncation_rate: Fraction = 0.3
    max_output_tokens: int | None = Field(default=None, ge=1)


class Canary(_IncidentBase):
    """A canary: ``share`` of the route's requests go to the arm ``arm`` served by ``model``
    (requested as such: not silent), the rest to ``control``; the canary's pass rate moves by
    ``pass_rate_delta``, its latency by ``latency_factor`` and it fails with ``error_rate``."""

    kind: Literal["canary"]
    model: str = Field(min_length=1, description="The canary's model.")
    provider: str | None = None
    share: Fraction = 0.2
    arm: str = Field(default="canary", min_length=1, max_length=256)
    control: str = Field(default="control", min_length=1, max_length=256)
    pass_rate_delta: float = Field(default=0.0, ge=-1, le=1)
    latency_factor: float = Field(default=1.0, gt=0)
    error_rate: Fraction | None = None


class JudgeDrift(_IncidentBase):
    """The route's LLM judge drifts from its human labels: a human label equals the judge's
    verdict only with probability ``agreement`` (the route's ``judge_agreement`` before)."""

    kind: Literal["judge_drift"]
    agreement: Fraction = 0.6


Incident = Annotated[
    QualityDrop | SilentTierUp | Alias404Storm | LatencyRegression | RetryStorm | TruncationSpike | Canary | JudgeDrift,
    Field(discriminator="kind"),
]


@dataclass(frozen=True, slots=True)
class IncidentWindow:
    """Ground truth of one seeded incident, in simulated epoch milliseconds."""

    name: str
    route: str
    kind: str
    start_ms: int
    end_ms: int
    expected_alertnames: tuple[str, ...]
    incident: Any  # the incident model (QualityDrop, SilentTierUp, ...)

    def active(self, ts_ms: int) -> bool:
        return self.start_ms <= ts_ms < self.end_ms


# --------------------------------------------------------------------------------------
# Scenario
# --------------------------------------------------------------------------------------


class ScenarioMeta(_Model):
    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    seed: int = Field(default=0, ge=0, description="Seed of the random generator; --seed overrides it.")
    start: EpochMsField = Field(description="Simulated start, RFC 3339 (UTC if no offset).")
    duration: DurationMs = Field(gt=0, description="Simulated duration, e.g. '24h'.")


class Scenario(_Model):
    """A whole scenario file. Field aliases are the TOML table names (``route``, ``incident``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    scenario: ScenarioMeta
    routes: list[Route] = Field(alias="route", min_length=1)
    noise: Noise = Noise()
    incidents: list[Incident] = Field(default_factory=list, alias="incident")

    @model_validator(mode="before")
    @classmethod
    def _apply_route_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "route_defaults" not in data:
            return data
        data = dict(data)
        defaults = data.pop("route_defaults")
        if not isinstance(defaults, dict):
            raise ValueError("[route_defaults] must be a table")
        merged = []
        for route in data.get("route", data.get("routes", [])) or []:
            if not isinstance(route, dict):
                merged.append(route)
                continue
            combined = dict(defaults)
            for key, value in route.items():
                if isinstance(value, dict) and isinstance(combined.get(key), dict):
                    combined[key] = {**combined[key], **value}
                else:
                    combined[key] = value
            merged.append(combined)
        data["route" if "route" in data else "routes"] = merged
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        names = [r.name for r in self.routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"route names must be unique: {dupes}")
        known = set(names)
        for inc in self.incidents:
            if inc.route not in known:
                raise ValueError(f"incident {inc.label!r} is on unknown route {inc.route!r}; routes: {names}")
        for window in self.incident_windows():
            if not (self.start_ms <= window.start_ms < self.end_ms):
                raise ValueError(f"incident {window.name!r} starts outside the scenario")
        return self

    # --- derived ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def seed(self) -> int:
        return self.scenario.seed

    @property
    def start_ms(self) -> int:
        return self.scenario.start

    @property
    def duration_ms(self) -> int:
        return self.scenario.duration

    @property
    def end_ms(self) -> int:
        return self.scenario.start + self.scenario.duration

    def route(self, name: str) -> Route:
        for r in self.routes:
            if r.name == name:
                return r
        raise KeyError(name)

    def incident_windows(self, start_ms: int | None = None) -> list[IncidentWindow]:
        """Incidents with their simulated start and end. With ``start_ms`` (a start override),
        incidents keep their offset from the scenario start."""
        base = self.scenario.start if start_ms is None else start_ms
        windows = []
        for inc in self.incidents:
            mode, value = inc.at
            offset = value if mode == "rel" else value - self.scenario.start
            begin = base + offset
            windows.append(
                IncidentWindow(
                    name=inc.label,
                    route=inc.route,
                    kind=inc.kind,
                    start_ms=begin,
                    end_ms=begin + inc.duration,
                    expected_alertnames=inc.expected_alertnames,
                    incident=inc,
                )
            )
        return windows

    def with_overrides(self, *, seed: int | None = None, start_ms: int | None = None) -> Scenario:
        """A copy with another seed and/or start; incidents keep their offsets."""
        if seed is None and start_ms is None:
            return self
        meta = self.scenario.model_copy(
            update={k: v for k, v in (("seed", seed), ("start", start_ms)) if v is not None}
        )
        if start_ms is None:
            incidents = self.incidents
        else:
            incidents = [
                inc.model_copy(update={"at": ("rel", w.start_ms - start_ms)})
                for inc, w in zip(self.incidents, self.incident_windows(start_ms), strict=True)
            ]
        return self.model_copy(update={"scenario": meta, "incidents": incidents})


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def _format_validation(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid scenario"]
    for err in exc.errors()[:20]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def parse_scenario(text: str, *, source: str = "<scenario>", prices: bool = True) -> Scenario:
    """Parse scenario TOML text. With ``prices``, every served model must be known to genai-prices."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format_validation(exc, source)) from None
    if prices:
        check_prices(scenario, source=source)
    return scenario


def bundled_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``telemetry/scenarios/`` (e.g. ``demo``)."""
    folder = resources.files("telemetry") / "scenarios"
    try:
        return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))
    except (FileNotFoundError, NotADirectoryError):
        return []


def load_scenario(source: str | Path, *, prices: bool = True) -> Scenario:
    """Load a scenario from a file path, or a bundled scenario by name (``"demo"``)."""
    path = Path(source)
    if path.is_file():
        return parse_scenario(path.read_text(encoding="utf-8"), source=str(path), prices=prices)
    name = str(source)
    if name.endswith(".toml") or "/" in name or "\\" in name:
        raise ScenarioError(f"scenario file {name!r} not found")
    resource = resources.files("telemetry") / "scenarios" / f"{name}.toml"
    if not resource.is_file():
        raise ScenarioError(
            f"no scenario file {name!r} and no bundled scenario of that name; bundled: {bundled_scenarios()}"
        )
    return parse_scenario(resource.read_text(encoding="utf-8"), source=f"bundled:{name}", prices=prices)


# --------------------------------------------------------------------------------------
# Prices (genai-prices, the same source the worker uses)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelPrice:
    provider: str
    model: str
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


def _price(provider: str, model: str, at_ms: int) -> ModelPrice | None:
    from genai_prices import Usage, calc_price

    from telemetry.contracts._time import ms_to_datetime

    try:
        calc = calc_price(
            Usage(input_tokens=1_000_000, output_tokens=1_000_000),
            model_ref=model,
            provider_id=provider,
            genai_request_timestamp=ms_to_datetime(at_ms),
        )
    except LookupError:
        return None
    except Exception:  # noqa: BLE001 - genai-prices raises various errors for unknown models
        return None
    return ModelPrice(provider, model, float(calc.input_price), float(calc.output_price))


def check_prices(scenario: Scenario, *, source: str = "<scenario>") -> dict[tuple[str, str], ModelPrice]:
    """Price of every (provider, model) the scenario serves, from genai-prices at the scenario
    start. Raises ScenarioError naming the models it does not know."""
    wanted: dict[tuple[str, str], str] = {}
    for r in scenario.routes:
        wanted[(r.provider, r.model)] = f"route {r.name} model"
        if r.response_model:
            wanted[(r.provider, r.response_model)] = f"route {r.name} response_model"
    for inc in scenario.incidents:
        if isinstance(inc, SilentTierUp):
            provider = inc.provider or scenario.route(inc.route).provider
            wanted[(provider, inc.model)] = f"incident {inc.label} model"
    table: dict[tuple[str, str], ModelPrice] = {}
    missing = []
    for (provider, model), where in wanted.items():
        price = _price(provider, model, scenario.start_ms)
        if price is None:
            missing.append(f"{where}: {provider}/{model}")
        else:
            table[(provider, model)] = price
    if missing:
        raise ScenarioError(f"{source}: models unknown to genai-prices: " + "; ".join(missing))
    return table


# --------------------------------------------------------------------------------------
# Description (dry run, docs, the demo's expectations)
# --------------------------------------------------------------------------------------


def expected_requests(route: Route, start_ms: int, duration_ms: int, step_ms: int = 60_000) -> float:
    """Expected logical requests of ``route`` over the window (numerical integral of the rate)."""
    total, t, end = 0.0, start_ms, start_ms + duration_ms
    while t < end:
        dt = min(step_ms, end - t)
        hour = ((t + dt / 2) / 3_600_000.0) % 24.0
        total += route.peak_rps * route.shape_factor(hour) * dt / 1000.0
        t += dt
    return total


def describe_scenario(scenario: Scenario, *, prices: bool = True) -> dict[str, Any]:
    """Expected figures of a scenario: requests and verdicts per route, prices, incident windows."""
    table = check_prices(scenario) if prices else {}
    routes = []
    for r in scenario.routes:
        n = expected_requests(r, scenario.start_ms, scenario.duration_ms)
        price = table.get((r.provider, r.served_model))
        in_mean = r.system_prompt_tokens + r.input_tokens.mean
        row = {
            "route": r.name,
            "team": r.team,
            "model": f"{r.provider}/{r.served_model}",
            "requests": round(n),
            "judged": round(n * (1 - r.error_rate) * r.judged_fraction),
            "latency_p95_ms": round(r.latency_ms.quantile(0.95)),
            "cost_per_request_usd": price.cost(in_mean, r.output_tokens.mean) if price else None,
        }
        routes.append(row)
    incidents = []
    for w in scenario.incident_windows():
        row = {
            "name": w.name,
            "route": w.route,
            "kind": w.kind,
            "start_ms": w.start_ms,
            "end_ms": w.end_ms,
            "expected_alertnames": list(w.expected_alertnames),
        }
        inc = w.incident
        if isinstance(inc, SilentTierUp) and prices:
            r = scenario.route(inc.route)
            old = table[(r.provider, r.served_model)]
            new = table[(inc.provider or r.provider, inc.model)]
            in_mean = r.system_prompt_tokens + r.input_tokens.mean
            row["cost_ratio"] = new.cost(in_mean, r.output_tokens.mean) / old.cost(in_mean, r.output_tokens.mean)
        if isinstance(inc, RetryStorm):
            row["retry_amplification"] = inc.amplification
        incidents.append(row)
    return {
        "name": scenario.name,
        "seed": scenario.seed,
        "start_ms": scenario.start_ms,
        "duration_ms": scenario.duration_ms,
        "requests": sum(r["requests"] for r in routes),
        "routes": routes,
        "incidents": incidents,
    }
