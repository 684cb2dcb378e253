"""gunicorn settings for serving the API with plain gunicorn, as deployed without `govern serve`:

    gunicorn -c python:governance.gunicorn_conf -w 4 -b 0.0.0.0:8000 'governance.app:create_app()'

Loaded by gunicorn's master before it forks a worker, so prometheus_client's multiprocess mode is
set before any worker imports the library: every worker writes its metrics to one directory
(PROMETHEUS_MULTIPROC_DIR, or `$GOVERNANCE_HOME/run/metrics`), emptied here at start as the
library asks, and `GET /api/v1/metrics` sums them; a worker that exits is marked dead so its
gauges leave the sum. Threaded workers, as `govern serve` runs them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from governance.config import load_config

metrics_dir = Path(
    os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    or Path(load_config()["GOVERNANCE_HOME"]) / "run" / "metrics"
)
shutil.rmtree(metrics_dir, ignore_errors=True)
metrics_dir.mkdir(parents=True, mode=0o700)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

worker_class = "gthread"
threads = 8


def child_exit(_server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
