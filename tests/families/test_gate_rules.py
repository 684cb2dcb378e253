"""The gate's comparison rules on their own (pure functions)."""

from __future__ import annotations

from governance.flows.evaluation import gain_reasons, regressions, worse_than


def scored(value, stderr=None, higher=True):
    return {"value": value, "stderr": stderr, "higher_is_better": higher}


def with_harness(**tasks):
    return {"eval_loss": 1.0, "evaluation": {"candidate": tasks}}


def test_a_drop_counts_only_beyond_the_tolerance_and_the_noise():
    assert worse_than(scored(0.60, 0.02), scored(0.80, 0.02), 0.05)  # 0.20 > 1.96 * 0.028
    assert not worse_than(scored(0.70, 0.05), scored(0.80, 0.05), 0.05)  # 0.10 < 0.139
    assert not worse_than(scored(0.78, 0.001), scored(0.80, 0.001), 0.05)  # within tolerance
    assert not worse_than(scored(0.0), scored(1.0), 0.05)  # one item: no standard error
    # Lower is better: a relative rise beyond the tolerance.
    assert worse_than(scored(2.2, higher=False), scored(2.0, higher=False), 0.05)
    assert not worse_than(scored(2.05, higher=False), scored(2.0, higher=False), 0.05)


def test_regressions_judge_each_written_task_on_its_primary_metric():
    old = with_harness(
        governance_choice={"metrics": {"acc": scored(0.9, 0.01), "acc_norm": scored(0.9, 0.01)}},
        governance_perplexity={
            "metrics": {
                "bits_per_byte": scored(2.0, higher=False),
                "word_perplexity": scored(100.0, higher=False),
            }
        },
        arc_easy={"metrics": {"acc_norm": scored(0.5, 0.01)}},
    )
    new = with_harness(
        governance_choice={"metrics": {"acc": scored(0.9, 0.01), "acc_norm": scored(0.1, 0.01)}},
        governance_perplexity={
            "metrics": {
                "bits_per_byte": scored(2.5, higher=False),
                "word_perplexity": scored(900.0, higher=False),
            }
        },
        arc_easy={"metrics": {"acc_norm": scored(0.3, 0.01)}},
    )
    found = regressions(new, old, 0.05)
    assert [f.split()[0] for f in found] == [
        "arc_easy/acc_norm",
        "governance_perplexity/bits_per_byte",
    ]
    assert regressions(new, None, 0.05) == []


def test_a_version_evaluated_before_the_harness_is_compared_on_multiple_choice():
    old = {"eval_loss": 1.0, "multiple_choice": {"acc": 0.9}}
    new = {"eval_loss": 1.2, "multiple_choice": {"acc": 0.5}}
    found = regressions(new, old, 0.05)
    assert len(found) == 2 and found[0].startswith("held-out loss")


def test_the_least_gain_over_the_base_is_enforced_per_task_and_metric():
    metrics = {"evaluation": {"gain": {"governance_choice/acc": 0.02}}}
    assert gain_reasons(metrics, {"governance_choice/acc": 0.0}) == []
    assert "0.02 < 0.05" in gain_reasons(metrics, {"governance_choice/acc": 0.05})[0]
    assert "no baseline" in gain_reasons(metrics, {"governance_exact/exact_match": 0.0})[0]
