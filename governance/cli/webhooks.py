"""`govern webhooks`: subscribers' secrets, the delivery log, sending and redelivery."""

from __future__ import annotations

import click

from governance.cli.base import cli_actor, fail_cleanly, instance_session, open_database, settings


@click.group("webhooks")
def webhooks() -> None:
    """Lifecycle webhooks to the subscribers in policies/domains.yaml."""


@webhooks.command("secret")
@click.argument("name")
@click.option("--rotate", is_flag=True, help="Replace an existing secret.")
@fail_cleanly
def webhooks_secret(name: str, rotate: bool) -> None:
    """Make subscriber NAME's signing secret (a 0600 file) and print it once, to hand over."""
    from governance.domains.settings import subscribers
    from governance.errors import NotFound
    from governance.webhooks.service import create_secret, secret_path

    config = settings()
    if name not in subscribers(config["GOVERNANCE_POLICY_DIR"]):
        raise NotFound(f"no subscriber {name!r} in policies/domains.yaml")
    value = create_secret(config["GOVERNANCE_HOME"], name, rotate=rotate)
    click.echo(
        f"secret of {name} written to {secret_path(config['GOVERNANCE_HOME'], name)}", err=True
    )
    click.echo(value)


@webhooks.command("list")
@click.option("--state", type=click.Choice(["pending", "delivered", "failed"]))
@click.option("--subscriber")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@fail_cleanly
def webhooks_list(state: str | None, subscriber: str | None, limit: int) -> None:
    """The delivery log, newest first."""
    from governance.domains.service import list_domains
    from governance.webhooks.service import delivery_read, list_deliveries

    with instance_session() as session:
        domains = [d.name for d in list_domains(session)]
        rows = list_deliveries(session, domains, state=state, subscriber=subscriber, limit=limit)
        for row in rows:
            read = delivery_read(session, row)
            click.echo(
                f"{read.uid}  {read.state:<9} {read.subscriber:<20} {read.event_type:<26} "
                f"audit #{read.audit_seq}  attempts {read.attempts}"
                + (f"  last: {read.last_error}" if read.last_error else "")
            )


@webhooks.command("deliver")
@fail_cleanly
def webhooks_deliver() -> None:
    """One pass: queue the events committed since the last pass and send what is due (the job
    runner does this every WEBHOOK_POLL_SECONDS)."""
    from governance.webhooks.service import Sender, pump

    db = open_database()
    sender = Sender(settings())
    try:
        counts = pump(db, sender)
    finally:
        sender.close()
        db.dispose()
    click.echo(", ".join(f"{k} {v}" for k, v in counts.items()))


@webhooks.command("redeliver")
@click.argument("uid")
@fail_cleanly
def webhooks_redeliver(uid: str) -> None:
    """Send delivery UID again (same id and body, fresh attempts); audited."""
    from governance.webhooks.service import find_delivery, redeliver

    with instance_session() as session:
        delivery = redeliver(session, find_delivery(session, uid), cli_actor())
        click.echo(f"{delivery.uid} queued again for {delivery.subscriber}")
