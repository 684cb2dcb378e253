"""One upload or one scan in a fresh process, with its peak memory.

Arguments: MODE HOME ARG PROCESSES; prints JSON."""

from __future__ import annotations

import json
import os
import sys
import time

from governance import runtime
from governance.audit.service import Actor
from governance.config import load_config
from governance.db import Database


def main() -> None:
    mode, home, arg, processes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def peak_kib(pid="self"):
        # VmHWM starts afresh at exec, unlike ru_maxrss, which Linux carries over from the parent.
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def children():
        pids = []
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as handle:
                pids += handle.read().split()
        return pids

    workers_peak = 0
    config = load_config({"GOVERNANCE_HOME": home})
    db = Database(config["GOVERNANCE_DATABASE_URL"])
    actor = Actor("bench")
    # The key ring and the blob store from the composition root, as the service builds them.
    rt = runtime.build(config)
    keyring, store = rt.keyring, rt.store
    started = time.perf_counter()
    with db.unit_of_work() as session:
        from governance.datasets import service as datasets

        dataset, domain = datasets.get_dataset(session, 1)
        if mode == "upload":
            with open(arg, "rb") as stream:
                version = datasets.upload_version(
                    session, keyring, store, dataset, domain, 2025, stream, actor=actor,
                    limits=datasets.UploadLimits.from_settings(config),
                )  # fmt: skip
            result = {"version": version.number, "records": version.record_count}
        else:
            from governance.pii import service as pii
            from governance.pii.rules import load_rules
            from governance.pii.scanner import open_scanner

            version = datasets.get_version(session, dataset, int(arg))
            rules = load_rules(config["GOVERNANCE_POLICY_DIR"], domain.name)
            with open_scanner(config["PII_MODEL"], processes) as scanner:
                started = time.perf_counter()
                receipt = pii.scan_version(
                    session, keyring, store, scanner, version, rules, actor=actor
                )
                seconds = time.perf_counter() - started
                workers_peak = max((peak_kib(pid) for pid in children()), default=0)
            result = {
                "verdict": receipt.verdict,
                "records": receipt.records_total,
                "from_cache": receipt.records_from_cache,
            }
    result["seconds"] = time.perf_counter() - started if mode == "upload" else seconds
    result["peak_kib"] = peak_kib()
    result["children_peak_kib"] = workers_peak
    print(json.dumps(result))


if __name__ == "__main__":
    main()
