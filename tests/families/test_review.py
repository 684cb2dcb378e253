# ruff: noqa: F811 (pytest fixtures imported from tests/pipeline.py)
"""Expert review and the judge: the gate samples conversations; the judge, a family served
through this project's own gateway (its engine a scripted, real OpenAI-compatible process),
scores them; domain experts score them in the API and the console; and the judge may gate
only once its agreement with the experts (weighted kappa) passes the threshold."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from audit.log import load_public_key
from benchmarks.served import serve_version, tiny_adapter
from governance import crypto, runtime
from governance.app import create_app
from governance.config import DEFAULT_POLICY_DIR
from governance.gateway.serving_engine import free_port
from tests.factories import close_app
from tests.families.test_engineer_cli import run_worker
from tests.pipeline import (  # noqa: F401 (fixtures)
    FAMILY,
    approve_data,
    audit_entries,
    call,
    live,
    scanner,
    train,
    world,
)

CRITERIA = ("correct", "private", "clear")


def quadratic_kappa(a: list[int], b: list[int], k: int = 5) -> float:
    """Cohen's quadratic weighted kappa, written out here independently of the product."""
    n = len(a)
    observed = [[0.0] * k for _ in range(k)]
    for x, y in zip(a, b, strict=True):
        observed[x - 1][y - 1] += 1
    rows = [sum(r) for r in observed]
    cols = [sum(observed[i][j] for i in range(k)) for j in range(k)]
    weight = [[(i - j) ** 2 / (k - 1) ** 2 for j in range(k)] for i in range(k)]
    seen = sum(weight[i][j] * observed[i][j] for i in range(k) for j in range(k))
    expected = sum(weight[i][j] * rows[i] * cols[j] / n for i in range(k) for j in range(k))
    return 1 - seen / expected


@pytest.fixture
def judge_engine(tmp_path, engine):
    """The scripted judge, an engine that takes the gateway's engine key: (script, URL)."""
    _url, key = engine
    script = tmp_path / "judge.json"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.families.judge", str(port), str(script), key],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    yield script, f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)
    process.stdout.close()


@pytest.fixture
def app(config, scanner, engine, judge_engine, tmp_path):
    """The pipeline's app, with a copy of the policy to edit, and the judge base's engine."""
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    config["GOVERNANCE_POLICY_DIR"] = str(policies)
    url, key = engine
    application = create_app(
        {
            **config,
            "TESTING": True,
            "GUARDRAILS_URL": "inprocess",
            "JOB_LEASE_SECONDS": 3,
            "SERVING_URL": url,
            "SERVING_API_KEY": key,
            "SERVING_ENGINES": f"judge-base={judge_engine[1]}",
        },
        runtime_overrides={"scanner": scanner},
    )
    yield application
    close_app(application)


@pytest.fixture
def judge(app, live, world, judge_engine, tmp_path, monkeypatch):
    """The family tax-judge in production on judge-base, served by the scripted engine;
    taxbot's key (a model consumer of consumer-tax) is the judge's key. (script, /v1 URL)"""
    script, _engine_url = judge_engine
    base, adapter = tmp_path / "judge-base", tmp_path / "judge-adapter"
    tiny_adapter(base, adapter, hidden_size=32, seed=5)
    rt = runtime.of(app)
    serve_version(
        rt.database,
        rt.store,
        "tax-judge",
        "consumer-tax",
        "judge-base",
        base,
        adapter,
        rt.sign_version,
    )
    monkeypatch.setenv("GOVERNANCE_TEST_JUDGE_TOKEN", world["taxbot"])
    return script, f"{live}/v1"


def point_at_judge(config, url: str) -> None:
    path = Path(config["GOVERNANCE_POLICY_DIR"]) / "criteria" / "consumer-tax.yaml"
    document = yaml.safe_load(path.read_text())
    document["judge"] = {
        "url": url,  # the gateway's /v1
        "model": "tax-judge",
        "token_env": "GOVERNANCE_TEST_JUDGE_TOKEN",
        "min_kappa": 0.6,
        "min_items": 3,
        "gate": True,
        "min_score": 3.0,
    }
    path.write_text(yaml.safe_dump(document))


# The judge's scores per conversation: low (under min_score 3 on average), and varied.
JUDGED = {
    "agi": {"correct": 1, "private": 2, "clear": 1},
    "wages": {"correct": 2, "private": 1, "clear": 2},
    "interest": {"correct": 1, "private": 1, "clear": 3},
}
# Experts who disagree: they rate what the judge rated low, high.
DISAGREE = {
    "agi": {"correct": 5, "private": 3, "clear": 5},
    "wages": {"correct": 3, "private": 5, "clear": 4},
    "interest": {"correct": 5, "private": 4, "clear": 2},
}


def reviews(client, world, number: int) -> dict:
    status, body = call(
        client, "drew", world, "GET", f"/api/v1/models/{FAMILY}/versions/{number}/reviews"
    )
    assert status == 200, body
    return body


def score_all(client, world, number: int, scores: dict) -> None:
    for item in reviews(client, world, number)["items"]:
        status, body = call(
            client,
            "drew",
            world,
            "POST",
            f"/api/v1/models/{FAMILY}/versions/{number}/reviews/{item['uid']}/scores",
            json={"scores": scores[item["conversation"]], "comment": "checked against Pub 17"},
        )
        assert status == 201, body


def gate_of(client, world, number: int) -> dict:
    _, version = call(client, "morgan", world, "GET", f"/api/v1/models/{FAMILY}/versions/{number}")
    return version


def test_the_judge_gates_only_once_it_agrees_with_the_experts(
    app, client, world, live, config, judge
):
    script, url = judge
    script.write_text(json.dumps(JUDGED))
    point_at_judge(config, url)
    approve_data(client, world)

    # v1: sampled and judged; no expert has scored anything, so the judge is advisory.
    assert train(client, world)[0] == 201
    run_worker(live, world)
    first = gate_of(client, world, 1)
    assert first["status"] == "evaluated", first["status_reason"]
    review = first["evaluation"]["review"]
    assert review["items"] == 3 and review["judge"]["scored"] == 3
    assert review["judge"]["mode"] == "advisory" and review["agreement"]["kappa"] is None
    body = reviews(client, world, 1)
    assert [i["conversation"] for i in body["items"]] == ["agi", "wages", "interest"]
    agi = body["items"][0]["transcript"]
    assert [m["role"] for m in agi] == ["user", "assistant", "user", "assistant"]
    # The judge saw the criteria and the conversation, through the gateway: the engine was
    # asked for the judge family's adapter, and the gateway audited taxbot's queries.
    asked = [json.loads(line) for line in Path(str(script) + ".log").read_text().splitlines()]
    chats = [a for a in asked if "messages" in a]
    assert len(chats) == 3 and "correct:" in chats[0]["messages"][-1]["content"]
    queries = audit_entries(client, world, "model.query")
    judged = [e for e in queries if e["object"] == "model/tax-judge"]
    assert len(judged) == 3 and {e["principal"] for e in judged} == {"taxbot"}

    check_console_review(client, world)

    # Bad expert input is refused, naming what is wrong; others may not review at all.
    item = body["items"][0]["uid"]
    path = f"/api/v1/models/{FAMILY}/versions/1/reviews/{item}/scores"
    status, error = call(client, "drew", world, "POST", path, json={"scores": {"correct": 6}})
    assert status == 422 and "scores" in json.dumps(error)
    status, error = call(client, "drew", world, "POST", path, json={"scores": {"tone": 3}})
    assert status == 422 and "tone" in error["error"]["message"]
    # Denied as a family one may not act on is answered everywhere: as absent.
    for who in ("morgan", "sam"):
        status, _ = call(client, who, world, "POST", path, json={"scores": {"correct": 3}})
        assert status == 404

    # Experts disagree with the judge: kappa under the threshold, the judge cannot gate.
    score_all(client, world, 1, DISAGREE)
    status, trust = call(
        client, "drew", world, "GET", "/api/v1/domains/consumer-tax/judge-agreement"
    )
    expert = [DISAGREE[c][k] for c in JUDGED for k in CRITERIA]
    judged = [JUDGED[c][k] for c in JUDGED for k in CRITERIA]
    assert trust["items"] == 3 and trust["pairs"] == 9
    assert trust["kappa"] == pytest.approx(quadratic_kappa(expert, judged), abs=1e-4)
    assert trust["kappa"] < 0.6 and not trust["trusted"]
    assert train(client, world)[0] == 201
    run_worker(live, world)
    second = gate_of(client, world, 2)
    assert second["status"] == "evaluated", second["status_reason"]
    assert second["evaluation"]["review"]["judge"]["mode"] == "advisory"

    # The experts' (re)scores agree with the judge: trusted, and its low scores now fail v3.
    score_all(client, world, 1, JUDGED)
    status, trust = call(
        client, "drew", world, "GET", "/api/v1/domains/consumer-tax/judge-agreement"
    )
    assert trust["kappa"] == pytest.approx(1.0) and trust["trusted"]
    assert train(client, world)[0] == 201
    run_worker(live, world)
    third = gate_of(client, world, 3)
    assert third["status"] == "failed"
    assert "judge: correct scores 1.33 on average < 3.00" in third["status_reason"]
    assert third["evaluation"]["review"]["judge"]["mode"] == "gating"
    # `govern lineage` prints the harness table, the exposure and the judge's say.
    from governance.families.lineage import render_tree

    _, lineage = call(client, "jordan", world, "GET", f"/api/v1/models/{FAMILY}/versions/3/lineage")
    tree = render_tree(lineage)
    assert "governance_perplexity/bits_per_byte" in tree and "memorization: 8 canaries" in tree
    assert "judge tax-judge (gating: kappa 1.00 over 3 items" in tree

    # Every score is signed by the service key over its digest, and audited.
    key = load_public_key(
        crypto.public_key_pem(crypto.load_signing_key(app.config["GOVERNANCE_HOME"]).public_key())
    )
    scores = reviews(client, world, 1)["items"][0]["scores"]
    assert {s["source"] for s in scores} == {"expert", "judge"}
    for score in scores:
        key.verify(bytes.fromhex(score["signature"]), bytes.fromhex(score["digest"]))
    entries = audit_entries(client, world, "review.score")
    assert len(entries) == 7 and {e["principal"] for e in entries} == {"drew"}


def check_console_review(client, world) -> None:
    """drew scores one conversation in the console; morgan sees the section but no form."""
    from tests.console.conftest import csrf_of, sign_in

    item = reviews(client, world, 1)["items"][1]
    sign_in(client, world["drew"])
    page = client.get(f"/console/models/{FAMILY}/versions/1")
    assert page.status_code == 200 and 'data-testid="review"' in page.text
    assert "Record my scores" in page.text and "until then it is advisory" in page.text
    answer = client.post(
        f"/console/models/{FAMILY}/versions/1/reviews/{item['uid']}",
        data={
            "csrf_token": csrf_of(page.text),
            "score-correct": "4",
            "score-clear": "2",
            "comment": "fine",
        },
    )
    assert answer.status_code == 302 and "notice=reviewed" in answer.headers["Location"]
    scores = {
        s["criterion"]: s["score"]
        for s in reviews(client, world, 1)["items"][1]["scores"]
        if s["source"] == "expert"
    }
    assert scores == {"correct": 4, "clear": 2}
    client.post("/console/sign-out", data={"csrf_token": csrf_of(page.text)})
    sign_in(client, world["morgan"])
    page = client.get(f"/console/models/{FAMILY}/versions/1")
    assert 'data-testid="review"' in page.text and "Record my scores" not in page.text
    client.post("/console/sign-out", data={"csrf_token": csrf_of(page.text)})
