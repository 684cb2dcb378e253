"""Scan a version in full, then two refreshes served partly from the cache.

Arguments: HOME COUNT; prints the timings as JSON."""

from __future__ import annotations

import io
import json
import sys
import time

from governance import runtime
from governance.audit.service import Actor
from governance.config import load_config
from governance.datasets import service as datasets
from governance.datasets.models import DatasetCreate
from governance.db import Database
from governance.domains.models import DomainCreate
from governance.domains.service import create_domain
from governance.instance import init_instance
from governance.pii import service as pii
from governance.pii.rules import load_rules
from governance.pii.synthetic import generate


def main() -> None:
    home, count = sys.argv[1], int(sys.argv[2])
    config = load_config({"GOVERNANCE_HOME": home})
    init_instance(config)
    db = Database(config["GOVERNANCE_DATABASE_URL"])
    actor = Actor("bench")
    # The key ring and the blob store from the composition root, as the service builds them.
    rt = runtime.build(config)
    keyring, store = rt.keyring, rt.store
    scanner = rt.scanner
    rules = load_rules(config["GOVERNANCE_POLICY_DIR"], "consumer-tax")
    prompts = [r["text"] for r in generate(count, seed=11)]
    answers = [r["text"] for r in generate(count, seed=13, clean_share=0.8)]

    def qa(year, prompt, answer):
        return {"prompt": prompt, "completion": answer, "metadata": {"tax_year": year}}

    base = [qa(2025, p, a) for p, a in zip(prompts, answers, strict=False)]
    changed = count // 10
    new_answers = [r["text"] + " (updated for 2026)" for r in generate(changed, seed=12)]
    new_prompts = [r["text"] + " (asked in 2027)" for r in generate(changed, seed=14)]
    newer_answers = [r["text"] + " (updated for 2027)" for r in generate(changed, seed=15)]
    keep = [qa(2026, p, a) for p, a in zip(prompts[changed:], answers[changed:], strict=False)]
    # A tax-law refresh: every record's metadata moves to 2026 and 10% of the answers change.
    answers_changed = [qa(2026, p, a) for p, a in zip(prompts, new_answers, strict=False)] + keep
    # The worst case for the cache: 10% of the records are wholly new.
    records_new = [qa(2026, p, a) for p, a in zip(new_prompts, newer_answers, strict=False)] + keep

    def jsonl(rs):
        return io.BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in rs))

    timings = []
    with db.unit_of_work() as session:
        domain = create_domain(
            session,
            DomainCreate(name="consumer-tax", jurisdiction="US", retention_days=2555),
            actor=actor,
        )
        dataset = datasets.create_dataset(
            session, domain, DatasetCreate(name="refresh"), actor=actor
        )
        for year, rs in ((2025, base), (2026, answers_changed), (2027, records_new)):
            version = datasets.upload_version(
                session, keyring, store, dataset, domain, year, jsonl(rs), actor=actor
            )
            started = time.perf_counter()
            receipt = pii.scan_version(
                session, keyring, store, scanner, version, rules, actor=actor
            )
            timings.append([time.perf_counter() - started, receipt.records_from_cache])
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
