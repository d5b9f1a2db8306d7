"""Words for the live view: a scenario's event timeline, the shock log, numbers.

Everything here is derived from the data (a :class:`~finsim_mesa.scenarios.Scenario`'s
fields, a shock-log record), never written by hand per scenario, so a scenario a
teacher registers is described the same way as the built-in ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finsim_mesa.scenarios import Scenario

__all__ = ["SHOCK_WORDS", "describe_scenario", "describe_shock", "percent", "scenario_background",
           "scenario_events"]

_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
            "ten")

# shock kind (SHOCK_KINDS) -> what the control calls it, what its size is a share of
SHOCK_WORDS: dict[str, tuple[str, str]] = {
    "price_crash": ("price crash", "of the price"),
    "funding_withdrawal": ("funding run", "of deposits"),
    "loss": ("loss", "of equity"),
    "default": ("default", ""),
}


def percent(share: float) -> str:
    """``0.05`` -> ``"5%"``, ``0.125`` -> ``"12.5%"`` (never scientific notation)."""
    text = f"{100 * share:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _count(k: int) -> str:
    return _NUMBERS[k] if 0 <= k < len(_NUMBERS) else str(k)


def _banks(k: int, target: str) -> str:
    if k == 1:
        return "a random bank" if target == "random" else f"the {target} bank"
    return f"{_count(k)} {target} banks"


def scenario_events(spec: Scenario) -> list[str]:
    """The scenario's scheduled events in step order, in words (may be empty)."""
    events: list[tuple[int, str]] = []  # (step, words)
    if spec.default_step is not None and spec.default_count:
        verb = "fails" if spec.default_count == 1 else "fail"
        events.append((spec.default_step, f"{_banks(spec.default_count, spec.default_target)} "
                                          f"{verb} at step {spec.default_step}"))
    if spec.crash_step is not None:
        where = f" in {spec.crash_asset}" if spec.crash_asset else ""
        events.append((spec.crash_step, f"{percent(spec.crash_magnitude)} price crash{where} "
                                        f"at step {spec.crash_step}"))
    if spec.funding_stress > 0 and spec.funding_stress_probability > 0:
        span = (f"steps {spec.funding_start}–{spec.funding_end}" if spec.funding_end
                else f"from step {spec.funding_start}")
        events.append((spec.funding_start, f"funding run {span}"))
    return [words for _, words in sorted(events, key=lambda e: e[0])]


def scenario_background(spec: Scenario) -> list[str]:
    """What goes on every step (random losses, price noise, stress), in words."""
    out = []
    if spec.funding_stress > 0 and spec.funding_stress_probability > 0:
        out.append(f"in the run each bank has a {percent(spec.funding_stress_probability)} "
                   f"chance a step to lose {percent(spec.funding_stress)} of deposits")
    if spec.shock_probability > 0 and spec.shock_fraction > 0 and spec.shock_magnitude > 0:
        who = {"random": "random banks", "largest": "the largest banks",
               "smallest": "the smallest banks"}[spec.shock_target]
        out.append(f"losses at {who} ({percent(spec.shock_probability)} a step)")
    out.append(f"price noise {percent(spec.price_volatility)} a step")
    if spec.stress_level > 0:
        out.append(f"market stress {spec.stress_level:g}")
    return out


def describe_scenario(spec: Scenario) -> str:
    """One line naming the scenario and its events in step order, then what goes on
    every step, e.g. ``"systemic: two largest banks fail at step 15, funding run
    steps 15–70, 5% price crash at step 20; …"``."""
    events = scenario_events(spec) or ["no scheduled events"]
    return f"{spec.name}: {', '.join(events)}; {', '.join(scenario_background(spec))}"


def describe_shock(record: Mapping[str, Any]) -> str:
    """A shock-log record (see :func:`finsim_mesa.scenarios.engine.apply_shock`) in
    words: what was applied, to whom, at which step."""
    kind = record["kind"]
    name, of = SHOCK_WORDS.get(kind, (kind, ""))
    size = "" if kind == "default" else f" of {percent(float(record['magnitude']))} {of}"
    banks = list(record.get("banks") or [])
    if kind == "price_crash":
        whom = f" on {record['asset']}" if record.get("asset") else " on all asset classes"
    elif not banks:
        whom = " (no active bank: nothing changed)"
    else:
        whom = " on bank " + ", ".join(str(b) for b in banks)
    return f"{name}{size}{whom} at step {record['step']}"
