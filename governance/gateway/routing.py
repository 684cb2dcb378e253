"""Routing across a family's variants, as written in `policies/routing.yaml`.

A family serves one variant per base model it has a serving version on (the same data
fine-tuned on bases of different sizes). Per request, the family's section of routing.yaml
chooses one:

    families:
      tax-assistant:
        mode: rules            # rules (first match wins) or auto
        rules:
          - when: {max_prompt_chars: 400}
            variant: tiny-small
          - when: {task: [summarize, classify], principals: [batch-app]}
            variant: tiny-large
        default: tiny-large    # when no rule matches (default: the family's own base)
        auto: {metric: eval_loss, tolerance: 0.05}
        costs: {tiny-small: 0.2, tiny-large: 1.0}   # per 1,000 tokens, any currency unit
        fallback: true         # when the chosen variant's engine is down, the next one
        limits: {requests_per_minute: 600, tokens_per_minute: 200000}
    default: {...}             # the same keys, for every family not listed

`auto` picks the cheapest variant whose score on the metric (from the version's evaluation
on the family's held-out set) is within the tolerance of the best variant's: relative for a
loss or perplexity (lower is better), absolute for an accuracy. A variant without the score
is not a candidate unless no variant has one. Prompt length counts characters: the web
process does not load tokenizers. Costs default to the size of the base's weights, a
stand-in for its parameter count, when routing.yaml names none.

Everything here is pure: the gateway passes the variants with their health, scores and
costs, and gets back the ordered candidates with the reason for each.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from governance.errors import GovernanceError

ROUTING_FILE = "routing.yaml"
MODES = ("rules", "auto")
CONDITIONS = ("max_prompt_chars", "min_prompt_chars", "task", "principals")
# Metrics of a version's evaluation that auto mode can compare, and whether lower is better.
METRICS = {
    "eval_loss": True,
    "perplexity": True,
    "multiple_choice.acc": False,
}
LIMIT_KEYS = ("requests_per_minute", "tokens_per_minute")
SECTION_KEYS = frozenset(
    {"mode", "rules", "default", "auto", "costs", "fallback", "limits", "description"}
)


class RoutingError(GovernanceError):
    status = 500
    code = "routing_policy_error"


@dataclass(frozen=True)
class Rule:
    index: int
    when: Mapping[str, Any]
    variant: str

    def matches(self, request: RouteRequest) -> bool:
        when = self.when
        if "max_prompt_chars" in when and request.prompt_chars > when["max_prompt_chars"]:
            return False
        if "min_prompt_chars" in when and request.prompt_chars < when["min_prompt_chars"]:
            return False
        if "task" in when and request.task not in when["task"]:
            return False
        return not ("principals" in when and request.principal not in when["principals"])

    def describe(self) -> str:
        parts = []
        for key in CONDITIONS:
            if key in self.when:
                value = self.when[key]
                shown = ",".join(value) if isinstance(value, list) else value
                parts.append(f"{key}={shown}")
        return f"rule {self.index}: " + (" ".join(parts) or "always")


@dataclass(frozen=True)
class FamilyRouting:
    mode: str = "rules"
    rules: tuple[Rule, ...] = ()
    default: str | None = None
    metric: str = "eval_loss"
    tolerance: float = 0.05
    costs: Mapping[str, float] = dataclasses.field(default_factory=dict)
    fallback: bool = True
    limits: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class RoutingPolicy:
    default: FamilyRouting
    families: Mapping[str, FamilyRouting]
    hash: str = ""

    def for_family(self, family: str) -> FamilyRouting:
        return self.families.get(family, self.default)


@dataclass(frozen=True)
class Variant:
    """A variant as routing sees it."""

    name: str  # the base model's name
    score: float | None
    cost: float
    healthy: bool = True


@dataclass(frozen=True)
class RouteRequest:
    principal: str
    prompt_chars: int
    task: str | None = None


@dataclass(frozen=True)
class Choice:
    variant: str
    reason: str


def _section(raw: Any, where: str) -> FamilyRouting:
    if raw is None:
        return FamilyRouting()
    if not isinstance(raw, dict):
        raise RoutingError(f"{where}: must be a mapping")
    unknown = set(raw) - SECTION_KEYS
    if unknown:
        raise RoutingError(f"{where}: unknown key(s) {sorted(unknown)}")
    mode = raw.get("mode", "rules")
    if mode not in MODES:
        raise RoutingError(f"{where}.mode: {mode!r} is not one of {list(MODES)}")
    rules = []
    for index, item in enumerate(raw.get("rules") or [], start=1):
        here = f"{where}.rules[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("variant"), str):
            raise RoutingError(f"{here}: needs a variant (a base model's name)")
        when = item.get("when") or {}
        if not isinstance(when, dict) or set(item) - {"when", "variant"}:
            raise RoutingError(f"{here}: only `when` and `variant` are allowed")
        for key, value in when.items():
            if key not in CONDITIONS:
                raise RoutingError(f"{here}.when: unknown condition {key!r}; use {CONDITIONS}")
            if key.endswith("_chars") and (not isinstance(value, int) or value < 0):
                raise RoutingError(f"{here}.when.{key}: must be a whole number of characters")
            if key in ("task", "principals") and not (
                isinstance(value, list) and value and all(isinstance(v, str) for v in value)
            ):
                raise RoutingError(f"{here}.when.{key}: must be a non-empty list of names")
        rules.append(Rule(index, dict(when), item["variant"]))
    auto = raw.get("auto") or {}
    if not isinstance(auto, dict) or set(auto) - {"metric", "tolerance"}:
        raise RoutingError(f"{where}.auto: takes `metric` and `tolerance`")
    metric = auto.get("metric", "eval_loss")
    if metric not in METRICS:
        raise RoutingError(f"{where}.auto.metric: {metric!r} is not one of {sorted(METRICS)}")
    tolerance = auto.get("tolerance", 0.05)
    if not isinstance(tolerance, int | float) or not 0 <= tolerance <= 1:
        raise RoutingError(f"{where}.auto.tolerance: must be from 0 to 1")
    costs = raw.get("costs") or {}
    if not isinstance(costs, dict) or not all(
        isinstance(v, int | float) and v >= 0 for v in costs.values()
    ):
        raise RoutingError(f"{where}.costs: must map variants to non-negative numbers")
    limits = raw.get("limits") or {}
    if not isinstance(limits, dict) or not all(
        k in LIMIT_KEYS and isinstance(v, int) and v > 0 for k, v in limits.items()
    ):
        raise RoutingError(f"{where}.limits: takes positive whole {list(LIMIT_KEYS)}")
    default = raw.get("default")
    if default is not None and not isinstance(default, str):
        raise RoutingError(f"{where}.default: must be a variant's name")
    fallback = raw.get("fallback", True)
    if not isinstance(fallback, bool):
        raise RoutingError(f"{where}.fallback: must be true or false")
    return FamilyRouting(
        mode=mode,
        rules=tuple(rules),
        default=default,
        metric=metric,
        tolerance=float(tolerance),
        costs={str(k): float(v) for k, v in costs.items()},
        fallback=fallback,
        limits=dict(limits),
    )


def parse(text: str, digest: str = "") -> RoutingPolicy:
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RoutingError(f"{ROUTING_FILE}: {exc}") from exc
    if not isinstance(document, dict):
        raise RoutingError(f"{ROUTING_FILE}: must be a mapping")
    unknown = set(document) - {"version", "default", "families"}
    if unknown:
        raise RoutingError(f"{ROUTING_FILE}: unknown key(s) {sorted(unknown)}")
    if document.get("version", 1) != 1:
        raise RoutingError(f"{ROUTING_FILE}: version must be 1")
    families = document.get("families") or {}
    if not isinstance(families, dict):
        raise RoutingError(f"{ROUTING_FILE}: families must be a mapping")
    return RoutingPolicy(
        default=_section(document.get("default"), "default"),
        families={str(k): _section(v, f"families.{k}") for k, v in families.items()},
        hash=digest,
    )


_cache: dict[Path, tuple[tuple[int, int], RoutingPolicy]] = {}
_cache_lock = threading.Lock()


def load(policy_dir: str | Path) -> RoutingPolicy:
    """The routing policy of a policy directory (none: every family serves its own base),
    read again only when the file changes."""
    path = Path(policy_dir) / ROUTING_FILE
    try:
        stat = path.stat()
    except FileNotFoundError:
        return RoutingPolicy(FamilyRouting(), {})
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        cached = _cache.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
    raw = path.read_bytes()
    policy = parse(raw.decode(), hashlib.sha256(raw).hexdigest())
    with _cache_lock:
        _cache[path] = (stamp, policy)
    return policy


def score_of(evaluation: Mapping[str, Any], metrics: Mapping[str, Any], metric: str):
    """A version's score on a metric: from its gate's held-out figures, else its metrics."""
    held_out = evaluation.get("held_out") or {}
    for source in (held_out, metrics):
        value: Any = source
        for part in metric.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, int | float):
            return float(value)
    return None


def _passing(variants: Sequence[Variant], routing: FamilyRouting) -> tuple[list[Variant], str]:
    lower_better = METRICS[routing.metric]
    scored = [v for v in variants if v.score is not None]
    if not scored:
        return list(variants), f"auto: no variant has {routing.metric}; all are candidates"
    scores = [v.score for v in scored if v.score is not None]
    best = min(scores) if lower_better else max(scores)
    if lower_better:
        passing = [
            v for v in scored if v.score is not None and v.score <= best * (1 + routing.tolerance)
        ]
        how = f"within {routing.tolerance:.0%} of the best {routing.metric} {best:.4g}"
    else:
        passing = [v for v in scored if v.score is not None and v.score >= best - routing.tolerance]
        how = f"within {routing.tolerance} of the best {routing.metric} {best:.4g}"
    return passing, how


def route(
    routing: FamilyRouting,
    variants: Sequence[Variant],
    request: RouteRequest,
    own_base: str,
) -> list[Choice]:
    """The variants to try, in order, each with the reason it is tried. Empty: none serves."""
    by_name = {v.name: v for v in variants}
    if not variants:
        return []
    cheapest = sorted(variants, key=lambda v: (v.cost, v.name))
    chosen: Choice | None = None
    if routing.mode == "auto":
        passing, how = _passing(variants, routing)
        healthy = [v for v in passing if v.healthy] or passing
        pick = min(healthy, key=lambda v: (v.cost, v.name))
        chosen = Choice(pick.name, f"auto: cheapest {how}")
    else:
        for rule in routing.rules:
            if rule.variant in by_name and rule.matches(request):
                chosen = Choice(rule.variant, rule.describe())
                break
        if chosen is None:
            default = routing.default if routing.default in by_name else None
            if default is None:
                default = own_base if own_base in by_name else cheapest[0].name
            chosen = Choice(default, "default")
    order = [chosen]
    if routing.fallback:
        for variant in cheapest:
            if variant.name != chosen.variant:
                order.append(Choice(variant.name, f"fallback from {chosen.variant}"))
    # Healthy variants first, in the order above; an unhealthy one is still tried last.
    return [c for c in order if by_name[c.variant].healthy] + [
        c for c in order if not by_name[c.variant].healthy
    ]


def cost_of(routing: FamilyRouting, name: str, weights_bytes: int) -> float:
    """The price of a variant per 1,000 tokens: routing.yaml's, else its weights in GB."""
    if name in routing.costs:
        return routing.costs[name]
    return weights_bytes / 1e9


_sizes: dict[str, int] = {}


def weights_size(path: str | Path) -> int:
    """Bytes of a base model's safetensors weights (a stand-in for its parameter count)."""
    key = str(path)
    if key not in _sizes:
        _sizes[key] = sum(p.stat().st_size for p in Path(path).glob("*.safetensors"))
    return _sizes[key]


def lint(policy_dir: str | Path) -> list[str]:
    """What is wrong with routing.yaml (nothing when it is absent: every family serves its
    own base)."""
    path = Path(policy_dir) / ROUTING_FILE
    if not path.is_file():
        return []
    try:
        parse(path.read_text())
    except RoutingError as exc:
        return [exc.message]
    return []
