"""`govern demo`: the product end to end on the embedded default, narrated.

The demo drives the real HTTP API through a server on a loopback port, so every step passes
the same authentication, authorization and validation a client meets.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from governance import crypto, runtime
from governance.accounts import service as accounts
from governance.accounts.models import PrincipalKind
from governance.audit.service import Actor
from governance.authz.policy import policy_hash
from governance.client import ApiError, wait_for_job
from governance.db import utcnow
from governance.gateway.serving_engine import free_port
from governance.instance import init_instance

DEMO_DOMAINS = [
    {
        "name": "consumer-tax",
        "description": "Individual returns: Form 1040 and its schedules",
        "jurisdiction": "US",
        "retention_days": 7 * 365,
    },
    {
        "name": "smb-accounting",
        "description": "Small-business books: Schedule C, payroll, 1099s",
        "jurisdiction": "US",
        "retention_days": 7 * 365,
    },
]
# casey is the consumer-tax data steward in the example policies/policy.csv.
DEMO_STEWARD = "casey"


class ApiClient:
    """A minimal JSON client for the service's HTTP API."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.token = token

    def call(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        """Send one request (a JSON body, or raw bytes); return the status and the JSON answer."""
        data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 (base_url is our loopback server)
            self.base_url + path, data=data, method=method
        )
        if data is not None:
            kind = "application/x-ndjson" if raw is not None else "application/json"
            request.add_header("Content-Type", kind)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            # Generous: the first scan in a process loads spaCy, and a busy machine is slow.
            with urllib.request.urlopen(request, timeout=DEMO_REQUEST_SECONDS) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")
        except TimeoutError as exc:
            raise DemoError(
                f"{method} {path} got no answer in {DEMO_REQUEST_SECONDS} s; the machine may "
                f"be very busy: try `make demo` again"
            ) from exc

    def job(self, status: int, body: Any, what: str) -> dict[str, Any]:
        """Follow a job the service accepted (202) to its end, saying what it is waiting on."""
        expect(status, body, 202, what)
        try:
            done = wait_for_job(
                body,
                url=self.base_url,
                token=self.token,
                limit_seconds=JOB_SECONDS,
                poll_seconds=0.3,
            )
        except ApiError as exc:  # Still running at the limit, failed, or unreachable.
            raise DemoError(
                f"demo step failed: {what}: {exc.message} (the machine may be very busy: "
                "try `make demo` again)"
            ) from None
        return done["result"]


DEMO_REQUEST_SECONDS = 600
JOB_SECONDS = 1800  # a scan's job, on a cold runner (it loads the scanner first)
WORKER_SECONDS = 1800  # one tiny training run; generous for a busy machine


class DemoError(RuntimeError):
    """The demo could not go on; the message says why (no traceback for the user)."""


@contextmanager
def running_server(config: dict[str, Any]) -> Iterator[str]:
    """Run `govern serve` on free loopback ports for the duration of the block: gunicorn's
    threaded web workers, the serving engine and a job runner, started cold, as deployed. The
    demo is a client of that server; its log goes to `serve.log` in the instance."""
    port = free_port()
    log_path = Path(config["GOVERNANCE_HOME"]) / "serve.log"
    env = {
        **os.environ,
        **{
            key: str(config[key])
            for key in ("GOVERNANCE_HOME", "GOVERNANCE_DATABASE_URL", "GOVERNANCE_POLICY_DIR")
        },
        # The engine and the guardrails: children of `govern serve` on free ports of their own.
        "SERVING_PORT": "",
        "SERVING_URL": "",
        "GUARDRAILS_PORT": "",
        "GUARDRAILS_URL": "",
    }
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "governance.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
                "--runners",
                "1",
            ],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + JOB_SECONDS
        while True:
            try:
                with urllib.request.urlopen(url + "/api/v1/health", timeout=10):  # noqa: S310
                    break
            except (OSError, urllib.error.URLError) as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise DemoError(
                        f"`govern serve` did not start ({exc}); see {log_path}"
                    ) from None
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()  # gunicorn stops its workers, then the engine and the runner
        try:
            server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def issue_demo_token(config: dict[str, Any], name: str, kind: PrincipalKind) -> str:
    """Make sure a principal exists and give it a one-day token, as an operator would."""
    import datetime as dt

    db = runtime.database_for(config)
    try:
        with db.unit_of_work() as session:
            actor = Actor("system:demo", None, policy_hash(config["GOVERNANCE_POLICY_DIR"]))
            accounts.ensure_principal(session, name, kind, actor=actor)
            principal = accounts.get_principal(session, name)
            _record, token = accounts.issue_token(
                session,
                principal,
                expires_at=utcnow() + dt.timedelta(days=1),
                description="govern demo",
                actor=actor,
            )
            return token
    finally:
        db.dispose()


def export_and_verify(
    config: dict[str, Any], echo: Callable[[str], None], step: int
) -> tuple[Path, bool]:
    """Export the whole audit log as a bundle and verify it offline, in a separate process."""
    from governance.flows.log_export import EntryFilter, write_bundle

    bundle = (
        Path(config["GOVERNANCE_HOME"]) / "exports" / f"audit-{utcnow():%Y%m%dT%H%M%S%f}.tar.gz"
    )
    bundle.parent.mkdir(mode=0o700, exist_ok=True)
    db = runtime.database_for(config)
    try:
        audit_log = runtime.audit_log_for(db, config, checkpoint_seconds=0)
        with db.session_scope() as session:
            manifest = write_bundle(session, EntryFilter(), bundle, audit_log.signing_key)
        # The auditor verifies with the key they were given, never the one inside the bundle.
        public_key = bundle.with_name("audit-public-key.pem")
        public_key.write_bytes(crypto.public_key_pem(audit_log.signing_key.public_key()))
    finally:
        db.dispose()
    echo(
        f"{step}. audit log exported: {manifest['entries']} entries, tree size "
        f"{manifest['tree_size']}, to {bundle}"
    )
    result = subprocess.run(
        [sys.executable, "-m", "audit", "verify", str(bundle), "--public-key", str(public_key)],
        capture_output=True,
        text=True,
        check=False,
    )
    verdict = result.stdout.splitlines()[0] if result.returncode == 0 else result.stderr.strip()
    echo(
        f"{step + 1}. python -m audit verify {bundle.name} --public-key {public_key.name}: "
        f"{verdict}"
    )
    return bundle, result.returncode == 0


def evidence_and_verify(
    config: dict[str, Any], echo: Callable[[str], None], step: int
) -> tuple[Path, bool]:
    """Write this year's evidence pack and verify it offline, in a separate process."""
    from governance.authz.policy import PolicySet
    from governance.flows.evidence import write_evidence_pack

    year = utcnow().year
    pack = Path(config["GOVERNANCE_HOME"]) / "exports" / f"evidence-{year}.tar.gz"
    db = runtime.database_for(config)
    try:
        audit_log = runtime.audit_log_for(db, config, checkpoint_seconds=0)
        with db.session_scope() as session:
            index = write_evidence_pack(
                session,
                pack,
                audit_log.signing_key,
                PolicySet.load(config["GOVERNANCE_POLICY_DIR"]),
                f"{year}-01-01..{year}-12-31",
            )
    finally:
        db.dispose()
    kinds = sorted({item["kind"] for item in index["items"]})
    echo(
        f"{step}. evidence pack for {year}: {len(index['items'])} files ({', '.join(kinds)}), "
        f"indexed by AI Act duty and signed, to {pack}"
    )
    result = subprocess.run(
        [
            sys.executable, "-m", "audit", "verify", str(pack),
            "--public-key", str(pack.with_name("audit-public-key.pem")),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    verdict = result.stdout.splitlines()[0] if result.returncode == 0 else result.stderr.strip()
    echo(f"{step + 1}. python -m audit verify {pack.name}: {verdict}")
    return pack, result.returncode == 0


def demo_records(count: int = 200, seed: int = 2025) -> bytes:
    """Synthetic tax questions, some carrying planted PII, as JSONL."""
    from governance.pii.synthetic import generate

    return b"".join(
        json.dumps({"text": r["text"]}).encode() + b"\n" for r in generate(count, seed=seed)
    )


def upload_and_scan(steward: ApiClient, echo: Callable[[str], None], step: int) -> dict:
    """Create a dataset, upload a tax year's records with planted PII, and scan them."""
    status, dataset = steward.call(
        "POST", "/api/v1/domains/consumer-tax/datasets", {"name": "returns-qa"}
    )
    if status == 409:
        listing = expect(
            *steward.call("GET", "/api/v1/domains/consumer-tax/datasets"), 200, "list datasets"
        )
        dataset = next(d for d in listing["items"] if d["name"] == "returns-qa")
    else:
        expect(status, dataset, 201, "create dataset returns-qa")
    status, version = steward.call(
        "POST", f"/api/v1/datasets/{dataset['id']}/versions?tax_year=2025", raw=demo_records()
    )
    expect(status, version, 201, "upload tax year 2025")
    echo(
        f"{step}. {DEMO_STEWARD} uploads tax-year 2025 records: HTTP {status}, "
        f"{version['record_count']} records, content hash {version['content_hash'][:16]}..."
    )
    status, bad = steward.call(
        "POST",
        f"/api/v1/datasets/{dataset['id']}/versions?tax_year=2025",
        raw=b'{"text": "fine"}\n{"text": oops}\n',
    )
    expect(status, bad, 422, "refuse a broken upload")
    echo(f"{step + 1}. a broken upload is refused: HTTP {status} ({bad['error']['message']})")
    started = steward.call(
        "POST", f"/api/v1/datasets/{dataset['id']}/versions/{version['version']}/scans"
    )
    status = started[0]
    receipt = steward.job(*started, "scan tax year 2025")["receipt"]
    counts = {etype: sum(fields.values()) for etype, fields in receipt["counts"].items()}
    echo(
        f"{step + 2}. PII scan: HTTP {status}, verdict {receipt['verdict']}, "
        f"{receipt['records_redacted']} records redacted, {receipt['records_dropped']} dropped; "
        f"found {counts}"
    )
    planted = sum(p for _found, p in receipt["canaries"].values())
    echo(
        f"   the scan measured itself: {planted} synthetic canaries planted, recall "
        f"{receipt['canary_recall']}; {receipt['records_quarantined']} records held for a "
        f"steward by the residual pass"
    )
    if receipt["samples"]:
        echo(f"   a redacted sample: {json.dumps(receipt['samples'][0])[:160]}")
    return {
        "dataset_version": version["uid"],
        "dataset_id": dataset["id"],
        "version": version["version"],
        "verdict": receipt["verdict"],
        "counts": counts,
    }


FAMILY = "tax-assistant"
REVIEWERS = ("priya", "lee")  # privacy and legal reviewers of consumer-tax
TRAINER, SECOND_ENGINEER = "morgan", "jordan"  # ml-engineers of consumer-tax
SECURITY_REVIEWER = "quinn"  # reviews base models before a domain builds on them


class Narrator:
    """Numbered narration of the demo's steps."""

    def __init__(self, echo: Callable[[str], None], start: int) -> None:
        self.echo, self.step = echo, start

    def __call__(self, text: str) -> None:
        self.echo(f"{self.step}. {text}")
        self.step += 1


def shown_answer(text: str) -> str:
    """A model's answer as the demo prints it: quoted, with what it is when it holds no words.
    The demo's base (trainers.tiny) is a random 64-wide byte-level model: a few seconds of
    LoRA training teach it the data's byte statistics (its held-out loss falls, which the gate
    measures), not language, so its greedy answers are runs of common bytes."""
    words = sum(1 for word in text.split() if len(word) > 2 and word.isalpha())
    if words >= 2:
        return repr(text)
    return (
        f"{len(text)} bytes, {text!r} (no words: the demo's base is a random tiny model, and "
        "minutes of CPU teach it byte statistics, not language; a real base answers in words)"
    )


def expect(status: int, body: Any, wanted: int, what: str) -> Any:
    if status != wanted:
        raise DemoError(f"demo step failed: {what}: HTTP {status} {json.dumps(body)[:300]}")
    return body


def demo_people(config: dict[str, Any], base_url: str, names) -> dict[str, ApiClient]:
    """An API client for each example person, with a fresh demo token."""
    return {
        name: ApiClient(base_url, issue_demo_token(config, name, PrincipalKind.USER))
        for name in names
    }


def run_worker(
    config: dict[str, Any], base_url: str, watch: Callable[[], None] | None = None
) -> subprocess.CompletedProcess:
    """Run `govern worker --once` as the example worker principal, against the demo server;
    `watch` is called every few seconds meanwhile (to print the job's progress)."""
    import tempfile

    token = issue_demo_token(config, "gpu-worker", PrincipalKind.SERVICE)
    args = [sys.executable, "-m", "governance.cli", "worker", "--once", "--poll", "0.2"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            args,
            env={**os.environ, "GOVERNANCE_URL": base_url, "GOVERNANCE_TOKEN": token},
            stdout=out,
            stderr=err,
            text=True,
        )
        deadline = time.monotonic() + WORKER_SECONDS
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise DemoError(
                    f"the training worker did not finish in {WORKER_SECONDS} s; the machine "
                    "may be very busy: try `make demo` again"
                )
            if watch is not None:
                watch()
            time.sleep(WATCH_SECONDS)
        out.seek(0)
        err.seek(0)
        worker = subprocess.CompletedProcess(args, process.returncode, out.read(), err.read())
    if worker.returncode != 0:
        raise DemoError(f"the worker failed: {worker.stderr[-1000:]}")
    return worker


# How often the demo looks at a job it waits for, and prints what changed.
WATCH_SECONDS = 3.0


def progress_printer(
    client: ApiClient, family: str, echo: Callable[[str], None]
) -> Callable[[], None]:
    """A function that prints, when it changed, the progress of each of the family's versions
    that trains or waits for its gate (step x/y and time left; the gate's stage)."""
    from governance.client import WorkClock

    clocks: dict[int, WorkClock] = {}
    seen: dict[int, tuple] = {}

    def watch() -> None:
        status, listing = client.call("GET", f"/api/v1/models/{family}/versions")
        if status != 200:
            return
        for item in listing["items"]:
            work = item.get("work")
            if not work:
                continue
            clock = clocks.setdefault(item["version"], WorkClock())
            line = clock.line(work)
            if seen.get(item["version"]) != clock.key(work):
                seen[item["version"]] = clock.key(work)
                echo(f"   {family} v{item['version']} {line}")

    return watch


def wait_evaluated(
    client: ApiClient, family: str = "tax-assistant", watch: Callable[[], None] | None = None
) -> None:
    """Wait until no version of the family waits for its evaluation gate (a job the result
    upload queued for the job runner); `watch` prints its stages meanwhile."""
    deadline = time.monotonic() + JOB_SECONDS
    while True:
        if watch is not None:
            watch()
        listing = expect(
            *client.call("GET", f"/api/v1/models/{family}/versions"), 200, "list versions"
        )
        if not any(v["status"] == "trained" for v in listing["items"]):
            return
        if time.monotonic() > deadline:
            raise DemoError(
                f"the evaluation gate did not finish in {JOB_SECONDS} s; the machine may be "
                "very busy: try `make demo` again"
            )
        time.sleep(0.3)


def version_summary(items: list[dict]) -> dict[str, Any]:
    """The summary's versions and tainted lists, from GET /api/v1/models/{family}/versions."""
    return {
        "versions": [{k: v[k] for k in ("family", "version", "tax_year", "status")} for v in items],
        "tainted": [
            {k: v[k] for k in ("family", "version", "tax_year")}
            for v in items
            if v["status"] == "tainted"
        ],
    }


def approve_all(people, uid: str, reviewers, reviewed: str):
    """Each reviewer approves the request in turn; yield (reviewer, decision)."""
    for reviewer in reviewers:
        decision = expect(
            *people[reviewer].call(
                "POST",
                f"/api/v1/approvals/{uid}/decisions",
                {"decision": "approve", "comment": f"{reviewed} reviewed"},
            ),
            201,
            f"{reviewer} approves request {uid}",
        )
        yield reviewer, decision


def train_and_serve(
    config: dict[str, Any],
    base_url: str,
    scan: dict,
    say: Narrator,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """Tiny base model, family, approvals, a worker process, the gate, promotion, queries."""
    from governance.families.intake import register_base_model
    from governance.families.lineage import render_tree
    from trainers.tiny import create_tiny

    people = demo_people(
        config,
        base_url,
        (*REVIEWERS, TRAINER, SECOND_ENGINEER, SECURITY_REVIEWER, "taxbot", "ledgerbot"),
    )
    base_path = Path(config["GOVERNANCE_HOME"]) / "base-models" / "tiny-llama"
    weights = create_tiny(base_path, seed=0)
    db = runtime.database_for(config)
    try:
        with db.unit_of_work() as session:
            actor = Actor("system:demo", None, policy_hash(config["GOVERNANCE_POLICY_DIR"]))
            base = register_base_model(
                session,
                "tiny-llama",
                base_path,
                source="generated:trainers.tiny seed=0",
                license="CC0-1.0",
                actor=actor,
            )
            files = len(base.files)
    finally:
        db.dispose()
    say(
        f"base model tiny-llama built and taken in: safetensors only, {files} files hashed, "
        f"model card read, license CC0-1.0, weights {weights[:16]}..."
    )
    intake = expect(
        *people[TRAINER].call(
            "POST",
            "/api/v1/approvals/base-model-use",
            {"base_model": "tiny-llama", "domain": "consumer-tax"},
        ),
        201,
        "request approval of the base model",
    )
    for reviewer, decision in approve_all(
        people, intake["uid"], ("lee", SECURITY_REVIEWER), "license, source, card and hashes"
    ):
        say(f"{reviewer} approves tiny-llama for consumer-tax as {decision['role']}")
    expect(
        *people[TRAINER].call(
            "POST",
            "/api/v1/domains/consumer-tax/models",
            {
                "name": FAMILY,
                "base_model": "tiny-llama",
                "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 0.002},
                "eval_suite": {
                    "holdout_fraction": 0.1,
                    "tolerance": 0.05,
                    # Fine-tuning must beat the untuned base on held-out text.
                    "min_gain": {"governance_perplexity/bits_per_byte": 0.0},
                    "multiple_choice": [
                        {
                            "question": "Which form reports wages?",
                            "choices": ["W-2", "Schedule SE"],
                            "answer": 0,
                        },
                        {
                            "question": "Which form reports self-employment tax?",
                            "choices": ["Schedule SE", "W-2"],
                            "answer": 0,
                        },
                        {
                            "question": "Which form reports interest income?",
                            "choices": ["W-4", "1099-INT"],
                            "answer": 1,
                        },
                        {
                            "question": "Which form is the individual income tax return?",
                            "choices": ["1040", "941"],
                            "answer": 0,
                        },
                    ],
                },
            },
        ),
        201,
        "create the model family",
    )
    say(f"{TRAINER} creates model family {FAMILY} in consumer-tax (LoRA r=8 on tiny-llama)")
    request = expect(
        *people[TRAINER].call(
            "POST",
            "/api/v1/approvals/dataset-use",
            {"dataset_id": scan["dataset_id"], "version": scan["version"], "family": FAMILY},
        ),
        201,
        "request approval for the data",
    )
    for reviewer, decision in approve_all(
        people, request["uid"], REVIEWERS, "receipt and redacted samples"
    ):
        say(
            f"{reviewer} approves training on the scanned version as {decision['role']} "
            f"(signed {decision['signature'][:16]}...)"
        )
    version = expect(
        *people[TRAINER].call(
            "POST",
            f"/api/v1/models/{FAMILY}/versions",
            {
                "tax_year": 2025,
                "datasets": [{"dataset_id": scan["dataset_id"], "version": scan["version"]}],
            },
        ),
        201,
        "start training",
    )
    say(f"{TRAINER} starts {FAMILY} v{version['version']} (tax year 2025): a job is queued")
    watch = progress_printer(people[TRAINER], FAMILY, echo)
    run_worker(config, base_url, watch)
    wait_evaluated(people[TRAINER], watch=watch)
    trained = expect(
        *people[TRAINER].call("GET", f"/api/v1/models/{FAMILY}/versions/1"), 200, "read v1"
    )
    gate = trained["evaluation"]
    say(
        f"a worker process (no database, no keys) trained it from the sanitized bundle: "
        f"eval loss {trained['metrics']['eval_loss']:.3f}, perplexity "
        f"{trained['metrics']['perplexity']:.1f}; gate {gate.get('gate')}, PII probe "
        f"{gate['pii_probe']['probes']} prompts, {gate['pii_probe']['leaks']} leaks"
    )
    harness = gate["harness"]
    gain = harness["gain"]
    say(
        f"the gate ran {harness['harness']} on {', '.join(sorted(harness['tasks']))}; over the "
        f"untuned base (zero- and {harness['baseline']['num_fewshot']}-shot) held-out bits per "
        f"byte improved by {gain['governance_perplexity/bits_per_byte']:+.3f}, multiple-choice "
        f"accuracy by {gain.get('governance_choice/acc', 0):+.2f}"
    )
    signal = trained["metrics"].get("held_out_gain") or {}
    if signal:
        say(
            f"the gate's signal: held-out loss fell by {signal['loss_drop']:.3f} ± "
            f"{2 * signal['stderr']:.3f} nats per token over {signal['records']} held-out "
            "records (2 standard errors; a version whose gain is within its noise fails)"
        )
    exposure = gate["memorization"]
    say(
        f"memorization test: {exposure['canaries']} canaries inserted into the training set, "
        f"mean exposure {exposure['mean_exposure_bits']:.2f} bits (refused above "
        f"{exposure['threshold_bits']:.1f}; a model that memorized them would score "
        f"{exposure['ceiling_bits']:.1f})"
    )
    promotion = expect(
        *people[TRAINER].call("POST", f"/api/v1/models/{FAMILY}/versions/1/promotion"),
        201,
        "request promotion",
    )
    status, _refusal = people[TRAINER].call(
        "POST",
        f"/api/v1/approvals/{promotion['uid']}/decisions",
        {"decision": "approve", "comment": "my own model"},
    )
    say(f"{TRAINER} tries to approve their own model's promotion: HTTP {status} refused")
    for reviewer in (SECOND_ENGINEER, "lee"):
        expect(
            *people[reviewer].call(
                "POST",
                f"/api/v1/approvals/{promotion['uid']}/decisions",
                {"decision": "approve", "comment": "gate passed, lineage checked"},
            ),
            201,
            f"{reviewer} approves the promotion",
        )
    promoted = expect(
        *people[TRAINER].call("POST", f"/api/v1/models/{FAMILY}/versions/1/promote"),
        200,
        "promote",
    )
    say(f"{SECOND_ENGINEER} and lee approve; v1 is {promoted['status']}")
    say_evidence(config, say)
    denied = 0
    for who in ("taxbot", "ledgerbot"):
        status, answer = people[who].call(
            "POST",
            f"/api/v1/models/{FAMILY}/generate",
            {"prompt": "Which form reports wages?", "max_new_tokens": 12},
        )
        if status == 200:
            say(
                f"{who} queries {FAMILY}: HTTP 200 from v{answer['version']}: "
                f"{shown_answer(answer['text'])}"
            )
        else:
            denied += 1
            say(f"{who} (smb-accounting) queries {FAMILY}: HTTP {status} denied, and audited")
    lineage = expect(
        *people[SECOND_ENGINEER].call("GET", f"/api/v1/models/{FAMILY}/versions/1/lineage"),
        200,
        "read the lineage of v1",
    )
    say("lineage of the production version (signed by the service key):")
    for line in render_tree(lineage).splitlines():
        echo(f"   {line}")
    versions = expect(
        *people[TRAINER].call("GET", f"/api/v1/models/{FAMILY}/versions"), 200, "list versions"
    )
    return {
        "production": {FAMILY: promoted["version"]},
        **version_summary(versions["items"]),
        "denied_queries": denied,
    }


def say_evidence(config: dict[str, Any], say: Narrator) -> None:
    """The promoted adapter's signature, and its ML-BOM, checked as an auditor would."""
    from governance.families import service
    from governance.families.mlbom import mlbom
    from governance.families.models import BaseModelRecord
    from governance.families.signing import verify_version
    from governance.runtime import default_store, signer_for

    db = runtime.database_for(config)
    try:
        with db.session_scope() as session:
            family, _ = service.find_family(session, FAMILY)
            version = service.get_version(session, family, 1)
            base = session.get(BaseModelRecord, version.base_model_id)
            checked = verify_version(default_store(config), signer_for(config), version, base)
            bom = mlbom(session, version)
    finally:
        db.dispose()
    say(
        f"v1's adapter is signed (OpenSSF model signing, {len(checked['files'])} files with the "
        f"base's manifest) and verifies; its CycloneDX {bom['specVersion']} ML-BOM validates "
        f"({len(bom['components'])} components: base model and datasets by hash)"
    )


def annual_cycle(
    config: dict[str, Any],
    base_url: str,
    steward: ApiClient,
    scan: dict,
    say: Narrator,
) -> dict[str, Any]:
    """A year passes: 2026 data in, 2025's deleted, the scheduled refresh makes version 2."""
    import datetime as dt

    from governance.scheduler.clock import run_due
    from governance.scheduler.process import advance_open_runs

    people = demo_people(config, base_url, (*REVIEWERS, SECOND_ENGINEER, "taxbot"))
    # The scheduler registers the family's yearly job (15 January, 06:00 UTC).
    run_due(config, dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    status, version = steward.call(
        "POST",
        f"/api/v1/datasets/{scan['dataset_id']}/versions?tax_year=2026",
        raw=demo_records(160, seed=2026),
    )
    expect(status, version, 201, "upload tax year 2026")
    steward.job(
        *steward.call(
            "POST", f"/api/v1/datasets/{scan['dataset_id']}/versions/{version['version']}/scans"
        ),
        "scan tax year 2026",
    )
    say(f"{DEMO_STEWARD} uploads and scans tax-year 2026 data (v{version['version']})")
    expect(
        *steward.call(
            "DELETE",
            f"/api/v1/datasets/{scan['dataset_id']}/versions/{scan['version']}",
            {"reason": "tax year 2025 data past its use"},
        ),
        200,
        "delete tax year 2025",
    )
    status, answer = people["taxbot"].call(
        "POST", f"/api/v1/models/{FAMILY}/generate", {"prompt": "Form 1040", "max_new_tokens": 4}
    )
    say(
        f"{DEMO_STEWARD} deletes the 2025 data: v1 is tainted at once; a query now answers "
        f"HTTP {status} ({(answer or {}).get('error', {}).get('code', 'served')})"
    )
    fired = run_due(config, dt.datetime(2027, 1, 15, 6, 0, 30, tzinfo=dt.UTC))
    say(f"the clock moves to 2027-01-15 06:00 UTC: the scheduler fires {', '.join(fired)}")
    for _ in range(8):
        advance_open_runs()
        listing = expect(
            *people["lee"].call("GET", "/api/v1/approvals?state=pending"), 200, "read the inbox"
        )
        for request in listing["items"]:
            reviewers = REVIEWERS if request["kind"] == "dataset-use" else (SECOND_ENGINEER, "lee")
            for reviewer in reviewers:
                people[reviewer].call(
                    "POST",
                    f"/api/v1/approvals/{request['uid']}/decisions",
                    {"decision": "approve", "comment": "annual refresh reviewed"},
                )
            say(f"{' and '.join(reviewers)} approve the refresh's {request['kind']} request")
        watch = progress_printer(people[SECOND_ENGINEER], FAMILY, say.echo)
        accepted = "result accepted" in run_worker(config, base_url, watch).stdout
        wait_evaluated(people[SECOND_ENGINEER], watch=watch)
        if accepted:
            say("a worker trains version 2 from the base model on the 2026 data; the gate runs")
        versions = expect(
            *people[SECOND_ENGINEER].call("GET", f"/api/v1/models/{FAMILY}/versions"),
            200,
            "list versions",
        )
        if any(v["status"] == "production" for v in versions["items"]):
            break
    # The retrain queued when v1 was tainted is moot now that 2026's model serves.
    advance_open_runs()
    status, answer = people["taxbot"].call(
        "POST", f"/api/v1/models/{FAMILY}/generate", {"prompt": "Form 1040", "max_new_tokens": 4}
    )
    say(f"taxbot queries {FAMILY}: HTTP {status}, answered by v{(answer or {}).get('version')}")
    production = {
        v["family"]: v["version"] for v in versions["items"] if v["status"] == "production"
    }
    return {
        "production": production,
        **version_summary(versions["items"]),
    }


def console_glance(config: dict[str, Any], base_url: str, say: Narrator) -> str:
    """The auditor signs in to the web console, as in a browser, and reads the log's status."""
    auditor = demo_people(config, base_url, ["audrey"])["audrey"]
    expect(*auditor.call("POST", "/api/v1/audit/checkpoints"), 201, "audrey signs a checkpoint")
    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with browser.open(base_url + "/console/sign-in", timeout=DEMO_REQUEST_SECONDS) as response:
        nonce = re.search(r'name="csrf_token" value="([^"]+)"', response.read().decode())
    form = {"csrf_token": nonce.group(1), "token": auditor.token, "next": "/console/audit"}
    # The sign-in answers with the session cookie and a redirect to the audit page.
    with browser.open(
        base_url + "/console/sign-in",
        urllib.parse.urlencode(form).encode(),
        timeout=DEMO_REQUEST_SECONDS,
    ) as response:
        page = response.read().decode()
    found = re.search(r'data-testid="checkpoint-status"><strong>(.*?)</strong>', page)
    if found is None:
        raise DemoError("demo step failed: the console's audit page shows no checkpoint")
    status = found.group(1).rstrip(".")
    say(f"auditor audrey signs in to the web console and opens /console/audit: {status}")
    return status


def openai_queries(config: dict[str, Any], base_url: str, say: Narrator) -> dict[str, Any]:
    """An application queries through the official openai SDK: the model list, a chat whose
    SSN the guardrails mask before the model sees it, a streamed answer; another domain's
    application is refused."""
    import openai

    apps = demo_people(config, base_url, ("taxbot", "ledgerbot"))
    tokens = {name: client.token for name, client in apps.items()}
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=tokens["taxbot"], max_retries=0)
    listed = [m.id for m in client.models.list()]
    say(f"taxbot, through the openai SDK: client.models.list() -> {listed}")
    chat = client.chat.completions.create(
        model=FAMILY,
        messages=[{"role": "user", "content": "My SSN is 536-22-8741. Which form reports wages?"}],
        max_tokens=12,
        temperature=0,
    )
    say(
        f"taxbot chats with {FAMILY} ({chat.system_fingerprint}): "
        f"{chat.choices[0].message.content!r}, {chat.usage.total_tokens} tokens; the SSN was "
        "masked before the model saw it, and audited as a count"
    )
    pieces = client.chat.completions.create(
        model=FAMILY,
        messages=[{"role": "user", "content": "What is Schedule C?"}],
        max_tokens=12,
        temperature=0,
        stream=True,
    )
    chunks = [c.choices[0].delta.content or "" for c in pieces if c.choices]
    say(
        f"taxbot streams an answer: {len(chunks)} server-sent chunks, "
        f"{shown_answer(''.join(chunks))}"
    )
    other = openai.OpenAI(base_url=base_url + "/v1", api_key=tokens["ledgerbot"], max_retries=0)
    try:
        other.chat.completions.create(
            model=FAMILY, messages=[{"role": "user", "content": "hello"}], max_tokens=2
        )
        refused = None
    except openai.NotFoundError as exc:
        refused = exc.status_code
    say(f"ledgerbot (smb-accounting) asks {FAMILY} through the SDK: HTTP {refused}, audited")
    if refused is None:
        raise DemoError("demo step failed: another domain's application was answered")
    engineer = demo_people(config, base_url, [TRAINER])[TRAINER]
    traffic = expect(
        *engineer.call("GET", f"/api/v1/models/{FAMILY}/traffic"), 200, "read the traffic"
    )
    for row in traffic["variants"]:
        if row["variant"] == "-":
            say(
                f"traffic of {FAMILY} that reached no variant (no version was serving, or "
                f"a guardrail refused it first): {row['refused']} refused, {row['failed']} "
                "failed"
            )
            continue
        p50 = row["latency_ms_p50"]
        say(
            f"traffic of {FAMILY} via {row['variant']}: {row['answered']} answered, "
            f"{row['refused']} refused, {row['failed']} failed, "
            f"p50 {'-' if p50 is None else f'{p50} ms'}, "
            f"{row['prompt_tokens'] + row['completion_tokens']} tokens"
        )
    return {"openai_models": listed, "openai_refused": refused}


PRIVATE_FAMILY = "ledger-helper"
PRIVATE_EPSILON = 8.0


def business_records(count: int = 90, businesses: int = 30, seed: int = 2026) -> bytes:
    """Small-business bookkeeping questions, each tagged with the business it came from
    (`metadata.customer_id`, the key smb-accounting's PII rules name as the unit of privacy)."""
    import random

    rng = random.Random(seed)  # noqa: S311 (demo data)
    topics = [
        ("a contractor's invoice", "Form 1099-NEC if you paid $600 or more", "Schedule C line 11"),
        ("a new laptop", "Section 179 or depreciation", "Form 4562"),
        ("business mileage", "the standard mileage rate", "Schedule C line 9"),
        ("a home office", "the simplified method", "Form 8829"),
        ("quarterly payroll taxes", "Form 941", "each quarter"),
        ("a client lunch", "50% of the cost", "Schedule C line 24b"),
    ]
    lines = []
    for i in range(count):
        what, rule, where = rng.choice(topics)
        record = {
            "prompt": f"How do I book {what} of ${rng.randrange(50, 5000):,}?",
            "completion": f"Use {rule}; it goes on {where}.",
            "metadata": {"customer_id": f"BIZ-{i % businesses:05d}"},
        }
        lines.append(json.dumps(record).encode() + b"\n")
    return b"".join(lines)


def private_training(config: dict[str, Any], base_url: str, say: Narrator) -> dict[str, Any]:
    """smb-accounting trains a version with differential privacy: per business (the unit of
    privacy its PII rules name), within the budget its rules set; the demo prints the epsilon
    spent, the ledger, and the exposure and membership-inference figures beside the
    non-private tax-assistant's; a second request over the budget is refused."""
    people = demo_people(config, base_url, ("sam", "riley", "priya", "lee", "quinn", "morgan"))
    steward, engineer = people["sam"], people["riley"]
    dataset = expect(
        *steward.call("POST", "/api/v1/domains/smb-accounting/datasets", {"name": "books-qa"}),
        201,
        "create dataset books-qa",
    )
    version = expect(
        *steward.call(
            "POST",
            f"/api/v1/datasets/{dataset['id']}/versions?tax_year=2026",
            raw=business_records(),
        ),
        201,
        "upload smb-accounting records",
    )
    receipt = steward.job(
        *steward.call("POST", f"/api/v1/datasets/{dataset['id']}/versions/1/scans"),
        "scan smb-accounting records",
    )["receipt"]
    say(
        f"sam uploads {version['record_count']} bookkeeping records of 30 businesses to "
        f"smb-accounting (each tagged with its business); scan verdict {receipt['verdict']}"
    )
    intake = expect(
        *engineer.call(
            "POST",
            "/api/v1/approvals/base-model-use",
            {"base_model": "tiny-llama", "domain": "smb-accounting"},
        ),
        201,
        "request tiny-llama for smb-accounting",
    )
    list(approve_all(people, intake["uid"], ("lee", "quinn"), "license and hashes"))
    expect(
        *engineer.call(
            "POST",
            "/api/v1/domains/smb-accounting/models",
            {
                "name": PRIVATE_FAMILY,
                "base_model": "tiny-llama",
                "hyperparameters": {"epochs": 3, "batch_size": 8, "learning_rate": 0.005},
                # `compare`: the worker also trains the same bundle without DP (its adapter
                # discarded), so the lineage shows what DP cost and bought on the same data.
                "privacy": {
                    "epsilon": PRIVATE_EPSILON,
                    "delta": 1e-5,
                    "max_grad_norm": 1.0,
                    "compare": True,
                },
            },
        ),
        201,
        "create the private family",
    )
    request = expect(
        *engineer.call(
            "POST",
            "/api/v1/approvals/dataset-use",
            {"dataset_id": dataset["id"], "version": 1, "family": PRIVATE_FAMILY},
        ),
        201,
        "request the smb data",
    )
    list(approve_all(people, request["uid"], ("priya",), "receipt"))
    say(
        f"riley creates {PRIVATE_FAMILY} with differential privacy (epsilon "
        f"{PRIVATE_EPSILON:g} per version, delta 1e-5, per business); lee and quinn approve the "
        "base, priya the data"
    )
    body = {"tax_year": 2026, "datasets": [{"dataset_id": dataset["id"], "version": 1}]}
    expect(
        *engineer.call("POST", f"/api/v1/models/{PRIVATE_FAMILY}/versions", body),
        201,
        "start private training",
    )
    watch = progress_printer(engineer, PRIVATE_FAMILY, say.echo)
    run_worker(config, base_url, watch)
    wait_evaluated(engineer, PRIVATE_FAMILY, watch=watch)
    private = expect(
        *engineer.call("GET", f"/api/v1/models/{PRIVATE_FAMILY}/versions/1"), 200, "read it"
    )
    plain = expect(
        *people["morgan"].call("GET", f"/api/v1/models/{FAMILY}/versions/2"), 200, "read v2"
    )
    spent = private["metrics"]["privacy"]
    say(
        f"a worker trained {PRIVATE_FAMILY} v1 with DP-SGD: epsilon {spent['epsilon']:.3f} spent "
        f"at delta {spent['delta']:g} per {spent['unit']} ({spent['units']} units, "
        f"{spent['steps']} steps, noise multiplier {spent['noise_multiplier']:.3f}); gate "
        f"{private['evaluation'].get('gate')}"
    )
    comparison = spent.get("comparison") or {}
    for label, shown in (
        (f"{FAMILY} v2, no DP (other data)", plain["metrics"]),
        (f"{PRIVATE_FAMILY} v1 data without DP (the comparison run)", comparison),
        (f"{PRIVATE_FAMILY} v1, DP", private["metrics"]),
    ):
        metrics = shown
        memo = metrics.get("memorization") or {}
        attack = (metrics.get("membership_inference") or {}).get("loss_attack") or {}
        reference = (metrics.get("membership_inference") or {}).get("reference_attack") or {}
        say(
            f"   {label}: canary exposure {memo.get('mean_exposure_bits')} bits; "
            f"membership inference AUC {attack.get('auc')} (loss), {reference.get('auc')} "
            f"(reference model); held-out loss {metrics.get('eval_loss') or 0:.3f}"
        )
    book = expect(
        *people["priya"].call("GET", "/api/v1/domains/smb-accounting/privacy-ledger"),
        200,
        "read the privacy ledger",
    )
    say(
        f"smb-accounting's privacy ledger: spent epsilon {book['spent']['epsilon']:.3f} of "
        f"{book['budget']['epsilon']:g} over {book['budget']['years']} years; remaining "
        f"{book['remaining']['epsilon']:.3f} (`govern privacy ledger smb-accounting`)"
    )
    status, refused = engineer.call("POST", f"/api/v1/models/{PRIVATE_FAMILY}/versions", body)
    expect(status, refused, 409, "refuse a version over the privacy budget")
    say(f"a second version is refused: HTTP {status} ({refused['error']['message'][:150]}...)")
    return {
        "private_version": {
            "family": PRIVATE_FAMILY,
            "epsilon": spent["epsilon"],
            "unit": spent["unit"],
            "gate": private["evaluation"].get("gate"),
            "ledger_spent": book["spent"]["epsilon"],
            "over_budget_refused": status,
            "compared": bool(comparison),
        }
    }


# The demo's policy change: casey covers smb-accounting's data as well (say, while sam is away).
DEMO_POLICY_CHANGE = (
    "\n# Proposed in the demo: casey covers smb-accounting's data while sam is away.\n"
    "g, casey, data-steward, smb-accounting\n"
)


def policy_change(config: dict[str, Any], base_url: str, say: Narrator, echo) -> dict[str, Any]:
    """A policy change as a reviewed pull request would go: lint, tests and the permission
    diff here; then the service's review (the same checks, and the replay of the recorded
    decisions against it) opens a policy-change request; the deployed files are refused until
    a security and a privacy reviewer approve; then reload puts them in force."""
    from governance.policy_review.changes import files_of
    from governance.policy_review.diff import diff_directories
    from governance.policy_review.lint import lint
    from governance.policy_review.policytest import run_policy_tests

    in_force = Path(config["GOVERNANCE_POLICY_DIR"])
    proposal = Path(config["GOVERNANCE_HOME"]) / "policy-proposal"
    shutil.rmtree(proposal, ignore_errors=True)
    shutil.copytree(in_force, proposal)
    with (proposal / "policy.csv").open("a") as handle:
        handle.write(DEMO_POLICY_CHANGE)
    # The same pull request updates the policy's own tests: casey now may.
    cases = proposal / "tests" / "stewards.yaml"
    if cases.is_file():
        text = cases.read_text()
        for verb in ("read", "upload"):
            text = text.replace(
                f"  - deny:  casey smb-accounting dataset {verb}\n",
                f"  - allow: casey smb-accounting dataset {verb}\n",
            )
        cases.write_text(text)
    errors = sum(p.severity == "error" for p in lint(proposal))
    tests = run_policy_tests(proposal)
    diff = diff_directories(in_force, proposal, "in force", "proposed")
    say(
        f"policy change proposed (casey also stewards smb-accounting): lint {errors} error(s), "
        f"policy tests {sum(t.passed for t in tests)}/{len(tests)} passed, diff: "
        f"+{len(diff.gained)} -{len(diff.lost)} permission(s)"
    )
    admin = ApiClient(base_url, issue_demo_token(config, "admin", PrincipalKind.USER))
    review = admin.job(
        *admin.call(
            "POST", "/api/v1/policy/changes", {"files": files_of(proposal), "since": "90d"}
        ),
        "the service reviews the policy change",
    )
    replay = review["replay"]
    say(
        f"replay of the last 90 days against it: {replay['examined']} recorded decision(s) "
        f"({replay['unavailable']} pruned), {replay['allow_to_deny']} allow->deny, "
        f"{replay['deny_to_allow']} deny->allow; approval {review['approval'][:10]} needs "
        f"{', '.join(review['required_roles'])}"
    )
    for group in replay["groups"][:5]:
        after = ", ".join(group["head_rule"]) if group["head_rule"] else "deny by default"
        echo(
            f"      {group['direction']} x{group['count']}: {group['principal']} "
            f"{group['action']} {group['object_kind']} in {group['domain']} (now: p, {after})"
        )
    # The change is deployed before anyone approved it: the service keeps the old policy.
    shutil.copytree(proposal, in_force, dirs_exist_ok=True)
    status, body = admin.call("POST", "/api/v1/policy/reload", {})
    expect(status, body, 409, "reload refuses an unapproved policy")
    say(f"reload before approval: HTTP {status} refused ({body['error']['code']})")
    people = demo_people(config, base_url, ("quinn", "priya"))
    for reviewer, decision in approve_all(people, review["approval"], ("quinn", "priya"), "replay"):
        say(f"{reviewer} approves the policy change (signed {decision['signature'][:16]}...)")
    status, body = admin.call("POST", "/api/v1/policy/reload", {})
    expect(status, body, 200, "reload puts the approved policy in force")
    say(f"reload after approval: HTTP {status}, policy {body['policy_hash'][:16]} in force")
    return {
        "policy_change": {
            "approval": review["approval"],
            "replayed": replay["examined"],
            "allow_to_deny": replay["allow_to_deny"],
            "deny_to_allow": replay["deny_to_allow"],
            "refused_before_approval": True,
            "in_force": body["policy_hash"],
        }
    }


def demo_policy_dir(config: dict[str, Any]) -> None:
    """The demo changes its policy (a reviewed change): it works on a copy in its instance,
    never on the files it was given."""
    source = Path(config["GOVERNANCE_POLICY_DIR"])
    copy = Path(config["GOVERNANCE_HOME"]) / "policies"
    if source.resolve() != copy.resolve():
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns(".*", "__pycache__"))
        config["GOVERNANCE_POLICY_DIR"] = str(copy)


def run_demo(config: dict[str, Any], echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo against the instance in config; return its summary."""
    config = dict(config)
    Path(config["GOVERNANCE_HOME"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    demo_policy_dir(config)
    report = init_instance(config)
    echo(f"1. init {report.home}: {', '.join(report.created) or 'already initialized'}")
    admin_token = issue_demo_token(config, accounts.ADMIN_PRINCIPAL, PrincipalKind.USER)
    calls: list[dict[str, Any]] = []

    with running_server(config) as base_url:
        admin = ApiClient(base_url, admin_token)
        for spec in DEMO_DOMAINS:
            status, body = admin.call("POST", "/api/v1/domains", spec)
            outcome = "created" if status == 201 else f"exists ({body['error']['code']})"
            echo(f"2. admin creates domain {spec['name']}: HTTP {status} {outcome}")

        status, _ = admin.call("POST", "/api/v1/principals", {"name": DEMO_STEWARD})
        echo(f"3. admin creates principal {DEMO_STEWARD}: HTTP {status}")
        steward_token = issue_demo_token(config, DEMO_STEWARD, PrincipalKind.USER)
        steward = ApiClient(base_url, steward_token)
        me = expect(*steward.call("GET", "/api/v1/me"), 200, f"read {DEMO_STEWARD}'s roles")
        roles = ", ".join(f"{r['role']}@{r['domain']}" for r in me["roles"])
        echo(f"   {DEMO_STEWARD}'s roles from policies/policy.csv: {roles}")

        attempts = [
            (steward, "GET", "/api/v1/domains/consumer-tax", f"{DEMO_STEWARD} reads consumer-tax"),
            (
                steward,
                "GET",
                "/api/v1/domains/smb-accounting",
                f"{DEMO_STEWARD} reads smb-accounting",
            ),
            (ApiClient(base_url), "GET", "/api/v1/domains", "anonymous lists domains"),
        ]
        for step, (client, method, path, what) in enumerate(attempts, start=4):
            status, body = client.call(method, path)
            verdict = "allowed" if status < 400 else "denied"
            reason = "" if status < 400 else f" ({body['error']['message']})"
            echo(f"{step}. {what}: HTTP {status} {verdict}{reason}")
            calls.append({"call": f"{method} {path}", "as": what.split()[0], "status": status})

        scan = upload_and_scan(steward, echo, step=len(attempts) + 4)
        say = Narrator(echo, len(attempts) + 7)
        models = train_and_serve(config, base_url, scan, say, echo)
        models.update(annual_cycle(config, base_url, steward, scan, say))
        models.update(private_training(config, base_url, say))
        console = console_glance(config, base_url, say)
        models.update(openai_queries(config, base_url, say))
        models.update(policy_change(config, base_url, say, echo))

    bundle, verified = export_and_verify(config, echo, step=say.step)
    pack, pack_verified = evidence_and_verify(config, echo, step=say.step + 2)
    return {
        **models,
        "evidence_pack": str(pack),
        "evidence_verified": pack_verified,
        "dataset_scan": scan,
        "home": report.home,
        "audit_bundle": str(bundle),
        "audit_verified": verified,
        "console_audit_page": console,
        "domains": [d["name"] for d in DEMO_DOMAINS],
        "allowed_calls": sum(1 for c in calls if c["status"] < 400),
        "denied_calls": sum(1 for c in calls if c["status"] >= 400),
        "calls": calls,
    }
