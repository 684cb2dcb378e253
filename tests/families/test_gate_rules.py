"""The gate's comparison rules on their own (pure functions)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from governance.errors import InvalidInput
from governance.families.models import EvalSuite, ModelFamily
from governance.families.service import check_data_size
from governance.flows.evaluation import gain_reasons, regressions, signal_reasons, worse_than
from governance.training.service import split


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


# --- a gate with a signal ----------------------------------------------------------------------


def held(drop: float, stderr: float, records: int = 20) -> dict:
    return {"loss_drop": drop, "stderr": stderr, "records": records}


def test_a_held_out_loss_drop_beyond_its_noise_is_a_signal():
    assert signal_reasons({"held_out_gain": held(0.08, 0.01)}, {}) == []


def test_a_version_that_learned_nothing_measurable_fails_with_the_numbers():
    metrics = {
        "held_out_gain": held(0.01, 0.02, 6),
        "evaluation": {"gain": {"governance_choice/acc": 0.0, "governance_exact/exact_match": 0}},
    }
    (reason,) = signal_reasons(metrics, {})
    assert "no measurable skill" in reason
    assert "0.0100 ± 0.0400" in reason and "6 records" in reason
    assert "accept_no_signal" in reason
    # Unless the family's recipe accepts it, in so many words.
    assert signal_reasons(metrics, {"accept_no_signal": True}) == []


def test_a_task_gain_beyond_its_standard_errors_is_a_signal_too():
    def scores(value, stderr):
        return {"governance_choice": {"metrics": {"acc": {"value": value, "stderr": stderr}}}}

    evaluation = {
        "baseline": {"zero_shot": scores(0.5, 0.05), "few_shot": scores(0.52, 0.04)},
        "candidate": scores(0.8, 0.04),
        "gain": {"governance_choice/acc": 0.28},
    }
    metrics = {"held_out_gain": held(0.0, 0.01), "evaluation": evaluation}
    assert signal_reasons(metrics, {}) == []
    # The same gain with noise as large as itself says nothing.
    evaluation["candidate"] = scores(0.8, 0.2)
    assert signal_reasons(metrics, {}) != []


def test_no_paired_measure_and_no_task_noise_is_no_signal():
    metrics = {"evaluation": {"gain": {"governance_perplexity/bits_per_byte": 0.3}}}
    (reason,) = signal_reasons(metrics, {})
    assert "measured no paired held-out loss" in reason


def test_the_trainers_paired_gain_is_the_mean_difference_and_its_standard_error():
    from trainers.lora import paired_gain

    gain = paired_gain([2.0, 2.0, 2.0, 2.0], [1.0, 1.5, 1.0, 1.5])
    assert gain == {"loss_drop": 0.75, "stderr": 0.144338, "records": 4}
    assert paired_gain([2.0], [1.0]) is None


# --- a training request is checked against the data it needs, when it is made ------------------


def family(holdout: float = 0.1, batch: int = 8) -> ModelFamily:
    return ModelFamily(
        name="f",
        domain_id=1,
        base_model_id=1,
        eval_suite={"holdout_fraction": holdout},
        hyperparameters={"batch_size": batch},
    )


def test_too_little_data_is_refused_with_the_numbers_and_what_to_do():
    with pytest.raises(InvalidInput) as refused:
        check_data_size(12, family())
    message = refused.value.message
    assert "12 record(s); the gate holds out 5 (10%, and at least 5" in message
    assert "leaves 7 to train on" in message and "at least 13 records" in message
    assert "govern dataset upload" in message and "--batch-size" in message
    assert refused.value.details[0]["least_records"] == 13
    check_data_size(13, family())  # 5 held out (topped up from 10%), 8 to train: one batch
    check_data_size(45, family())  # the 45 records of issue 32 train


def test_a_training_part_smaller_than_one_batch_is_refused():
    with pytest.raises(InvalidInput, match="one batch of 64"):
        check_data_size(100, family(holdout=0.5, batch=64))
    # More than half must stay for training, whatever the batch.
    with pytest.raises(InvalidInput, match="more than half"):
        check_data_size(20, family(holdout=0.5, batch=2))


def test_the_split_holds_out_by_hash_and_tops_up_to_what_the_gate_needs():
    records = [{"text": f"record {i}"} for i in range(200)]
    train, held = split(records, 0.1)
    assert 10 <= len(held) <= 30 and len(train) + len(held) == 200
    # A record its hash holds out stays held out whatever else the data holds.
    _t, held_half = split(records[:100], 0.1)
    first = {r["text"] for r in records[:100]}
    assert {r["text"] for r in held} & first <= {r["text"] for r in held_half}
    small = records[:13]
    train, held = split(small, 0.1)
    assert len(held) == 5 and len(train) == 8
    assert sorted(r["text"] for r in train + held) == sorted(r["text"] for r in small)
    assert [len(part) for part in split(records[:2], 0.1)] == [1, 1]


def test_a_few_shot_baseline_needs_more_items_than_shots():
    item = {"question": "Which form reports wages?", "choices": ["W-2", "8829"], "answer": 0}
    with pytest.raises(ValidationError, match="at least 4 multiple_choice items"):
        EvalSuite(multiple_choice=[item])
    assert EvalSuite(multiple_choice=[item], few_shot=0).few_shot == 0
    assert len(EvalSuite(multiple_choice=[item] * 4).multiple_choice) == 4
    assert EvalSuite().few_shot == 3  # no items: the harness tasks decide alone


def test_schedules_read_in_words_and_unusual_ones_as_themselves():
    from governance.families.cron import describe_cron

    assert describe_cron("0 6 15 1 *") == "every year on 15 January at 06:00 UTC"
    assert describe_cron("30 2 * * 1") == "every Monday at 02:30 UTC"
    assert describe_cron("0 0 1 * *") == "on day 1 of every month at 00:00 UTC"
    assert describe_cron("0 6 * * *") == "every day at 06:00 UTC"
    assert describe_cron("*/15 6 * * *") == "cron */15 6 * * * (UTC)"
