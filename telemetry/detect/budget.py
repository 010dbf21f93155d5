"""BudgetOverrun: projected monthly spend per route and per team against a configured budget.

Contract
--------
- Projection: priced spend over the trailing 24 hours (hour resolution, or since the route's
  first request when younger) scaled to 30 days: ``spend / span x 30 days``. It needs
  ``budget_min_span`` (6 h) of history: a fresh route's first burst is not a month.
- Only routes with ``monthly_budget_usd`` and teams with ``[teams.<name>] monthly_budget_usd``
  are checked. Fire when the projection reaches the budget; clear below ``budget_clear_ratio``
  (90%) of it.
- A route alert has the route label; a team alert has ``route = "team:<name>"`` and the team
  label (identity labels have no team). ``model`` is ``""``. Unpriced requests are not in the
  spend; the evidence gives their share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from telemetry.contracts.alert import Severity
from telemetry.detect.condition import Condition, Evidence, clip, rounded, usd
from telemetry.detect.detector import Context, Detector
from telemetry.detect.names import BUDGET_OVERRUN, TEAM_ROUTE_PREFIX
from telemetry.detect.policy import Duration, PolicySection, RoutesView
from telemetry.detect.window import HOUR_MS, RouteWindow

DAY_MS = 86_400_000
MONTH_MS = 30 * DAY_MS
SPAN_MS = DAY_MS
"""The trailing spend a projection rests on."""


class BudgetPolicy(PolicySection):
    """BudgetOverrun's keys of the route policy. Team budgets use those of [defaults]."""

    monthly_budget_usd: float | None = Field(None, gt=0)
    budget_clear_ratio: float = Field(0.9, gt=0, le=1)
    budget_min_span: Duration = 6 * HOUR_MS


@dataclass(frozen=True, slots=True)
class Spend:
    """One route's trailing spend: ``cost`` over ``span_ms``, with request counts."""

    cost: float
    span_ms: float
    requests: int
    priced: int


@dataclass(slots=True)
class BudgetState:
    """Keys (route, or ``team:<name>``) whose projection is over budget."""

    active: list[str] = field(default_factory=list)


def has_budgets(config: RoutesView) -> bool:
    """Whether ``config`` sets any route or team budget (else the detector does nothing)."""
    return (
        any(p.section(BudgetPolicy).monthly_budget_usd for p in config.routes.values())
        or bool(config.defaults.section(BudgetPolicy).monthly_budget_usd)
        or any(t.monthly_budget_usd for t in config.teams.values())
    )


def route_spend(w: RouteWindow, now_ms: int) -> Spend:
    """Trailing 24 h spend of a route (hour resolution, current minute included)."""
    hours = SPAN_MS // HOUR_MS
    cost, span = w.spend(now_ms, SPAN_MS)
    return Spend(
        cost=cost,
        span_ms=span,
        requests=int(w.hours_total("hreq", hours)),
        priced=int(w.hours_total("hpriced", hours)),
    )


class BudgetDetector(Detector):
    """Route and team budgets; state is the set of keys over budget.

    Route phase: each route's trailing spend, kept until the route is evaluated again (so it is
    as fresh as the route's other conditions). Fleet phase: the projections of routes and teams.
    Nothing at all unless the routes file sets a budget.
    """

    name: ClassVar[str] = "budget"
    alertname: ClassVar[str] = BUDGET_OVERRUN
    severity: ClassVar[Severity] = "warning"
    keep_firing_ms: ClassVar[int] = HOUR_MS
    policy: ClassVar[type[BudgetPolicy]] = BudgetPolicy

    def __init__(self) -> None:
        self.state = BudgetState()
        self.spends: dict[str, Spend] = {}
        self._enabled: tuple[RoutesView, bool] | None = None

    def _has_budgets(self, config: RoutesView) -> bool:
        if self._enabled is None or self._enabled[0] is not config:
            self._enabled = (config, has_budgets(config))
        return self._enabled[1]

    def evaluate_route(self, route: str, w: RouteWindow, policy: BudgetPolicy, ctx: Context) -> list[Condition]:
        """Keep the route's spend for the fleet phase; no condition of its own here."""
        if self._has_budgets(ctx.routes):
            self.spends[route] = route_spend(w, ctx.now_ms)
        return []

    def evaluate(self, ctx: Context) -> list[Condition]:
        """Conditions of every budgeted route and team whose projected month is over budget."""
        if not self._has_budgets(ctx.routes):
            return []
        config = ctx.routes
        teams = {route: config.team_for(route, w.team) for route, w in ctx.windows.items()}
        return self.over_budget(self.spends, teams, config, ctx.now_ms)

    def drop_route(self, route: str) -> None:
        self.spends.pop(route, None)

    def repair_clock(self, wall_ms: int) -> None:
        self.state = BudgetState()
        self.spends.clear()

    def over_budget(
        self, spends: Mapping[str, Spend], teams: Mapping[str, str], config: RoutesView, now_ms: int
    ) -> list[Condition]:
        """Conditions for every route and team whose projected month is over budget.

        ``spends`` per route seen, ``teams`` maps each route to its owner team. Team budgets use
        the [defaults] ``budget_min_span`` and ``budget_clear_ratio``.
        """
        active = set(self.state.active)
        out: list[Condition] = []
        for route, spend in sorted(spends.items()):
            policy = config.for_route(route).section(BudgetPolicy)
            budget = policy.monthly_budget_usd
            if budget is None:
                active.discard(route)
                continue
            cond = self._check(
                route, "", [spend], budget, policy.budget_min_span, policy.budget_clear_ratio, active, now_ms
            )
            if cond:
                out.append(cond)
        defaults = config.defaults.section(BudgetPolicy)
        for team, team_policy in sorted(config.teams.items()):
            key = TEAM_ROUTE_PREFIX + team
            if team_policy.monthly_budget_usd is None:
                active.discard(key)
                continue
            members = [spends[r] for r, t in teams.items() if t == team and r in spends]
            cond = self._check(
                key,
                team,
                members,
                team_policy.monthly_budget_usd,
                defaults.budget_min_span,
                defaults.budget_clear_ratio,
                active,
                now_ms,
            )
            if cond:
                out.append(cond)
        self.state.active = sorted(active)
        return out

    @staticmethod
    def _check(
        key: str,
        team: str,
        spends: list[Spend],
        budget: float,
        min_span_ms: int,
        clear_ratio: float,
        active: set[str],
        now_ms: int,
    ) -> Condition | None:
        span = max((s.span_ms for s in spends), default=0.0)
        if span < min_span_ms:
            active.discard(key)
            return None
        cost = sum(s.cost for s in spends)
        requests = sum(s.requests for s in spends)
        priced = sum(s.priced for s in spends)
        projected = cost / span * MONTH_MS
        level = budget * clear_ratio if key in active else budget
        if projected < level:
            active.discard(key)
            return None
        active.add(key)
        who = f"team {team}" if team else f"route {key}"
        evidence: Evidence = {
            "projected_monthly_usd": rounded(projected, 6),
            "monthly_budget_usd": budget,
            "projected_share_of_budget": rounded(projected / budget, 4),
            "spend_usd": rounded(cost, 6),
            "span_hours": rounded(span / 3_600_000, 4),
            "requests": requests,
            "unpriced_share": rounded(1 - priced / requests, 4) if requests else None,
            "routes": len(spends),
        }
        summary = (
            f"{who} projected spend {usd(projected)}/month exceeds budget {usd(budget)} "
            f"({projected / budget:.0%}), from {usd(cost)} in the last {span / 3_600_000:.0f}h"
        )
        description = (
            f"{who.capitalize()} spent {usd(cost)} over the last {span / 3_600_000:.1f} hours "
            f"({requests} requests{f' across {len(spends)} routes' if team else ''}); at that rate a 30-day "
            f"month costs {usd(projected)} against a budget of {usd(budget)}. Clears below "
            f"{clear_ratio:.0%} of the budget."
        )
        return Condition(
            alertname=BUDGET_OVERRUN,
            route=key,
            model="",
            summary=clip(summary),
            description=description,
            evidence=evidence,
            decided_at_ms=now_ms,
            team=team or None,
        )

    def to_state(self) -> dict[str, Any]:
        return {"active": list(self.state.active)}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> BudgetDetector:
        det = cls()
        det.state = BudgetState(active=list(data.get("active", [])))
        return det
