"""Steps of the growth benchmark in a fresh process; each prints JSON.

`submit HOME`: queue a scan job of dataset 1's version 1 (job runners take it).
`bundle HOME`: write the training bundle of the version's latest scan, with its peak memory."""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from governance import runtime
from governance.audit.service import Actor
from governance.config import load_config
from governance.db import Database


def peak_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    mode, home = sys.argv[1], sys.argv[2]
    config = load_config({"GOVERNANCE_HOME": home})
    db = Database(config["GOVERNANCE_DATABASE_URL"])
    from governance.datasets import service as datasets

    if mode == "submit":
        from governance.jobs import service as jobs
        from governance.jobs.executors import LocalExecutor

        with db.unit_of_work() as session:
            dataset, domain = datasets.get_dataset(session, 1)
            version = datasets.get_version(session, dataset, 1)
            job = jobs.submit(
                session,
                "scan",
                f"dataset-version/{version.uid}",
                domain.name,
                {"object": "scan", "dataset_id": 1, "version": 1},
                actor=Actor("bench"),
                executor=LocalExecutor(),
            )
            print(json.dumps({"job": job.uid}))
        return
    from governance.training.service import write_bundle

    rt = runtime.build(config)
    with db.unit_of_work() as session:
        dataset, _domain = datasets.get_dataset(session, 1)
        version = datasets.get_version(session, dataset, 1)

        # The version's own records, shard by shard: the same reader a sanitized view has
        # (the scan holds many of these synthetic records for a steward, which would leave
        # little to bundle), so the bundle is as large as the version.
        def records():
            for r in datasets.iter_version_records(session, rt.keyring, rt.store, version):
                yield {k: v for k, v in r.items() if k != "metadata"}

        scratch = Path(home) / "tmp"
        with tempfile.TemporaryFile(dir=Path(home)) as out:
            started = time.perf_counter()
            write_bundle(out, scratch, records, {}, {}, uuid.uuid4().hex, {"bench": True})
            seconds = time.perf_counter() - started
            size = out.seek(0, 2)
    print(json.dumps({"seconds": seconds, "bytes": size, "peak_kib": peak_kib()}))


if __name__ == "__main__":
    main()
