"""Retry and failure policies as pure rules.

A tool's ``spec.policy.rules`` is an ordered list of ``when``/``then`` rules (the last may
be ``else``). After every attempt the rules are evaluated against ``output`` and
``attempt``; the first that holds decides. ``retry`` holds only while attempts remain
(``attempts`` counts every attempt, the first included); once exhausted the outcome
stands (an error fails the step). With no policy, success continues and error fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.core.templates import render_value, truthy
from engine.dsl.models import Policy, RetryThen

Action = Literal["retry", "fail", "continue", "jump", "break"]


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """What happens after one attempt, and which rule said so."""

    action: Action
    rule: str  # "rules[2]", "else", "default", "rules[0] exhausted"
    delay: float = 0.0  # seconds before the next attempt (retry only), before jitter
    jitter: bool = False
    to: str | None = None
    set: dict[str, Any] = field(default_factory=dict)
    attempts: int | None = None


def retry_delay(then: Mapping[str, Any], attempt: int) -> float:
    """Delay before attempt ``attempt + 1`` from rendered ``delay``/``backoff``/``max_delay``."""
    base = float(then.get("delay") or 0.0)
    backoff = then.get("backoff") or "none"
    if backoff == "exponential":
        delay = base * (2 ** (attempt - 1))
    elif backoff == "linear":
        delay = base * attempt
    else:
        delay = base
    max_delay = then.get("max_delay")
    if max_delay is not None:
        delay = min(delay, float(max_delay))
    return max(delay, 0.0)


def _rendered_then(then: RetryThen, context: Mapping[str, Any], where: str) -> dict[str, Any]:
    raw = then.model_dump(exclude_none=True, exclude={"set"})
    rendered: dict[str, Any] = render_value(raw, context, where=where)
    return rendered


def decide_after_attempt(
    policy: Policy | None,
    output: Mapping[str, Any],
    attempt: int,
    context: Mapping[str, Any],
    *,
    where: str = "policy",
) -> PolicyDecision:
    """Evaluate ``policy`` after attempt number ``attempt`` (1-based) produced ``output``."""
    failed = output.get("status") == "error"
    if policy is None or not policy.rules:
        return PolicyDecision("fail" if failed else "continue", "default")
    scope = {**context, "output": output, "attempt": attempt, "result": output.get("data")}
    for index, rule in enumerate(policy.rules):
        label = "else" if rule.else_ is not None else f"rules[{index}]"
        if rule.else_ is None:
            condition = rule.when
            if isinstance(condition, str):
                holds = truthy(render_value(condition, scope, where=f"{where}.{label}.when"))
            else:
                holds = True if condition is None else bool(condition)
            if not holds:
                continue
        then = rule.action
        fields = _rendered_then(then, scope, f"{where}.{label}.then")
        updates = render_value(then.set, scope, where=f"{where}.{label}.then.set")
        action: Action = then.do
        if action == "retry":
            attempts = int(fields.get("attempts") or 3)
            if attempt >= attempts:
                exhausted: Action = "fail" if failed else "continue"
                return PolicyDecision(
                    exhausted, f"{label} exhausted", set=updates, attempts=attempts
                )
            jitter = fields.get("jitter")
            return PolicyDecision(
                "retry",
                label,
                delay=retry_delay(fields, attempt),
                jitter=bool(jitter) and jitter not in ("false", "0"),
                set=updates,
                attempts=attempts,
            )
        return PolicyDecision(action, label, to=then.to, set=updates)
    return PolicyDecision("fail" if failed else "continue", "default")
