"""The tier-up gate: a decision to serve a route with a pricier model, with a paper trail.

``telemetry gate open`` records the proposal with the evidence of that moment (quality with
intervals, the closed-book / gold-context reading, the cost projection at the request
distribution, the team's budget, the route's earlier tier-ups); a reviewer other than the author
approves or rejects it; the worker marks it ``applied`` when the route's traffic moves to the
proposed model and ``postmortem_due`` 30 days later (``TierUpPostmortemDue``); the postmortem
closes it. TierSwitch alerts say whether a switch was gated. See ``docs/gates.md``.

- :mod:`.model`: the record and its state machine (pure);
- :mod:`.evidence`: the evidence attached at open (pure, over query results);
- :mod:`.keeper`: the transitions the worker decides from traffic (pure);
- :mod:`.render`: Markdown and HTML of a gate (pure);
- :mod:`.queries` and :mod:`.store`: the ClickHouse side;
- :mod:`.cli`: ``telemetry gate``.
"""
