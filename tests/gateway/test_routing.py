"""Routing, guardrail and stop-string logic on their own (no server): what the gateway's
end-to-end tests rely on, over cases those tests do not reach."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.errors import TooManyRequests
from governance.gateway import guardrails, routing
from governance.gateway.backends import StopText
from governance.gateway.guardrails import Span
from governance.gateway.limits import QueryLimits, RateLimiter
from governance.gateway.routing import RouteRequest, Variant
from governance.policy_review.lint import lint


def choose(text: str, variants, request, own="large") -> list[tuple[str, str]]:
    policy = routing.parse(text)
    return [
        (c.variant, c.reason) for c in routing.route(policy.for_family("f"), variants, request, own)
    ]


SMALL = Variant("small", score=2.05, cost=0.2)
LARGE = Variant("large", score=2.0, cost=1.0)


def test_rules_match_in_order_and_fall_back_to_the_default():
    text = """
families:
  f:
    rules:
      - when: {max_prompt_chars: 10, principals: [app]}
        variant: small
      - when: {task: [summarize]}
        variant: small
    default: large
"""
    assert choose(text, [SMALL, LARGE], RouteRequest("app", 5))[0] == (
        "small",
        "rule 1: max_prompt_chars=10 principals=app",
    )
    assert choose(text, [SMALL, LARGE], RouteRequest("other", 5))[0] == ("large", "default")
    assert choose(text, [SMALL, LARGE], RouteRequest("other", 500, "summarize"))[0][0] == "small"
    # A rule naming a variant that does not serve is skipped.
    assert choose(text, [LARGE], RouteRequest("app", 5)) == [("large", "default")]


def test_auto_picks_the_cheapest_within_tolerance_and_healthy_variants_first():
    wide = "families:\n  f:\n    mode: auto\n    auto: {metric: eval_loss, tolerance: 0.05}\n"
    narrow = wide.replace("0.05", "0.01")
    assert choose(wide, [SMALL, LARGE], RouteRequest("a", 1))[0][0] == "small"
    assert choose(narrow, [SMALL, LARGE], RouteRequest("a", 1))[0][0] == "large"
    down = Variant("small", score=2.05, cost=0.2, healthy=False)
    order = choose(wide, [down, LARGE], RouteRequest("a", 1))
    assert [v for v, _r in order] == ["large", "small"]
    accuracy = (
        "families:\n  f:\n    mode: auto\n    auto: {metric: multiple_choice.acc, tolerance: 0.1}\n"
    )
    assert (
        choose(
            accuracy,
            [Variant("small", 0.75, 0.2), Variant("large", 0.8, 1.0)],
            RouteRequest("a", 1),
        )[0][0]
        == "small"
    )
    assert (
        choose(
            accuracy,
            [Variant("small", 0.6, 0.2), Variant("large", 0.8, 1.0)],
            RouteRequest("a", 1),
        )[0][0]
        == "large"
    )


def test_scores_come_from_the_gate_or_the_metrics():
    assert routing.score_of({"held_out": {"eval_loss": 1.5}}, {"eval_loss": 9}, "eval_loss") == 1.5
    assert routing.score_of({}, {"multiple_choice": {"acc": 0.7}}, "multiple_choice.acc") == 0.7
    assert routing.score_of({}, {}, "perplexity") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("families:\n  f:\n    mode: fastest\n", "families.f.mode"),
        (
            "families:\n  f:\n    rules:\n      - when: {colour: red}\n        variant: a\n",
            "unknown condition",
        ),
        ("families:\n  f:\n    auto: {metric: bleu}\n", "families.f.auto.metric"),
        ("families:\n  f:\n    costs: {a: -1}\n", "families.f.costs"),
        ("families:\n  f:\n    limits: {requests_per_hour: 5}\n", "families.f.limits"),
        ("colour: red\n", "unknown key"),
    ],
)
def test_routing_yaml_errors_name_the_place(text, message):
    with pytest.raises(routing.RoutingError, match=message):
        routing.parse(text)


def test_policy_lint_checks_routing_and_guardrails(tmp_path):
    import shutil

    from governance.config import DEFAULT_POLICY_DIR

    target = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, target)
    (target / "routing.yaml").write_text("families:\n  f:\n    mode: fastest\n")
    (target / "guardrails.yaml").write_text(
        "domains:\n  nowhere: {prompts: mask}\n  consumer-tax: {answers: block}\n"
    )
    found = [str(p) for p in lint(target)]
    assert any(m.startswith("routing.yaml: error: families.f.mode") for m in found), found
    assert any("guardrails.yaml: error" in m and "answers" in m for m in found), found
    (target / "guardrails.yaml").write_text("domains:\n  nowhere: {prompts: mask}\n")
    found = [str(p) for p in lint(target)]
    assert any("domain 'nowhere': nothing defines it" in m for m in found), found


def test_masking_covers_overlapping_spans_once():
    text = "SSN 536-22-8741 and phone 415-555-0134"
    spans = [
        Span(4, 15, "US_SSN", 0.9),
        Span(8, 15, "IDENTIFIER", 0.3),
        Span(26, 38, "PHONE_NUMBER", 0.7),
    ]
    assert guardrails.mask(text, spans) == "SSN <US_SSN> and phone <PHONE_NUMBER>"
    assert guardrails.counts([spans]) == {"IDENTIFIER": 1, "PHONE_NUMBER": 1, "US_SSN": 1}
    domain = guardrails.parse("default: {prompts: mask}\ndomains:\n  d: {block: [US_SSN]}\n")
    assert domain.for_domain("d").block == {"US_SSN"} and domain.for_domain("d").prompts == "mask"
    assert domain.for_domain("other").block == frozenset()


@given(
    st.text(alphabet="ab#", max_size=30),
    st.lists(st.text(alphabet="ab#", min_size=1, max_size=3), max_size=3),
    st.lists(st.integers(min_value=1, max_value=4), max_size=10),
)
def test_streamed_text_equals_the_whole_text_cut_at_the_first_stop(text, stops, sizes):
    # The answer ends before the stop string that is complete first as the text grows.
    ends = [(i + len(s), i) for s in stops if (i := text.find(s)) >= 0]
    expected = text[: min(ends)[1]] if ends else text
    buffer = StopText(tuple(stops))
    out, position = [], 0
    for size in sizes or [len(text) or 1]:
        out.append(buffer.feed(text[position : position + size]))
        position += size
    out.append(buffer.feed(text[position:]))
    out.append(buffer.finish())
    assert "".join(out) == expected


def test_policy_tests_check_routing_and_report_a_wrong_expectation(tmp_path):
    import shutil

    from governance.config import DEFAULT_POLICY_DIR
    from governance.policy_review.policytest import run_policy_tests

    target = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, target)
    shipped = [r for r in run_policy_tests(target) if r.file == "tests/routing.yaml"]
    assert shipped and all(r.passed for r in shipped)
    (target / "tests" / "wrong.yaml").write_text(
        "cases:\n"
        "  - route: {family: tax-assistant, principal: taxbot, prompt_chars: 5000,\n"
        "            own_base: llama-3.1-8b,\n"
        "            variants: {llama-3.2-1b: {cost: 0.06}, llama-3.1-8b: {cost: 0.3}}}\n"
        "    expect: llama-3.2-1b\n"
        "  - route: nonsense\n"
        "    expect: x\n"
    )
    wrong, malformed = [r for r in run_policy_tests(target) if r.file == "tests/wrong.yaml"]
    assert not wrong.passed and "got llama-3.1-8b (default)" in str(wrong)
    assert not malformed.passed and malformed.expected == "malformed"


def test_query_limits_kept_in_redis_hold_across_processes():
    """Two limiters on the same Redis (two gateway processes) share the counts."""
    url = "redis://127.0.0.1:6379/11"
    first = QueryLimits(RateLimiter(3, url), tokens_per_minute=0)
    second = QueryLimits(RateLimiter(3, url), tokens_per_minute=0)
    try:
        both_share_counts(first, second)
    finally:
        first.requests.close()
        second.requests.close()


def both_share_counts(first: QueryLimits, second: QueryLimits) -> None:
    family_limits = {"tokens_per_minute": 50}
    principal, family = f"p-{uuid.uuid4().hex}", f"f-{uuid.uuid4().hex}"
    first.admit(principal, family, family_limits)
    second.admit(principal, family, family_limits)
    first.admit(principal, family, family_limits)
    with pytest.raises(TooManyRequests) as refused:
        second.admit(principal, family, family_limits)
    assert refused.value.details["limit"] == "the principal's requests"
    other = f"p-{uuid.uuid4().hex}"
    first.admit(other, family, family_limits)
    second.spend(other, family, family_limits, 60)  # over the family's 50 tokens
    with pytest.raises(TooManyRequests) as refused:
        first.admit(f"p-{uuid.uuid4().hex}", family, family_limits)
    assert refused.value.details["limit"] == "the family's tokens"
    assert refused.value.retry_after >= 1
