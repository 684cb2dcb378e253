"""The job runner: `govern jobs run` runs scans and evaluations the API queued."""

from __future__ import annotations

import logging
import signal
import threading

import click

from governance.cli.base import fail_cleanly, open_database, settings


@click.group()
def jobs() -> None:
    """Run the service's jobs (scans, evaluations) outside the web process."""


@jobs.command("run")
@click.option("--poll", default=0.5, show_default=True, help="Seconds between polls when idle.")
@click.option("--once", is_flag=True, help="Run the queued jobs, then exit.")
@fail_cleanly
def jobs_run(poll: float, once: bool) -> None:
    """Claim queued jobs and run them, one at a time, until stopped (SIGTERM finishes the
    current job first); send lifecycle webhooks meanwhile."""
    from governance import runtime
    from governance.webhooks.service import Dispatcher
    from governance.workers.runner import run_forever, run_pending

    open_database().dispose()  # Refuse an uninitialized instance before waiting for work.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s jobs %(message)s")
    config = settings()
    rt = runtime.build(config)
    if not config.get("SERVING_URL"):
        # The evaluation gate loads the candidate in this process rather than in the serving
        # engine, which keeps serving production while a candidate is judged.
        from governance.gateway.backends import LocalBackend

        rt.use(
            backend=LocalBackend(rt.store, rt.home / "cache" / "adapters", signer=rt.model_signer)
        )
    try:
        if once:
            click.echo(f"ran {run_pending(rt)} job(s)")
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        # Lifecycle webhooks go out from here too, on their own thread, so a long job does not
        # hold them back.
        dispatcher = Dispatcher(rt.database, config)
        dispatcher.start()
        try:
            run_forever(rt, poll, stop.is_set)
        finally:
            dispatcher.stop()
    finally:
        rt.close()
