"""Lifecycle webhooks: a domain's subscribers hear of versions created, approvals decided,
promotions, taints, rollbacks and dataset deletions, signed, retried, and logged.

Events come from committed audit entries, never from the code paths that make the changes:
the log is the one source of truth, an event is sent only for a change that committed, and
none is lost when a process dies between the commit and the send. Queuing reads the entries
after a cursor and writes the deliveries and the moved cursor in one transaction; sending
claims due deliveries with a lease, so several processes can send without sending twice
what one of them still holds.

Signatures follow Standard Webhooks (https://www.standardwebhooks.com): headers
`webhook-id` (the delivery's id, the same on every retry, for deduplication),
`webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`, with a `whsec_` secret per subscriber. Receivers verify with any
Standard Webhooks library. A secret comes from the environment
(`GOVERNANCE_WEBHOOK_SECRET_<NAME>`, the name upper-cased with `-` as `_`) or from
`GOVERNANCE_HOME/secrets/webhooks/<name>.key` (0600; `govern webhooks secret NAME` makes one).

Retries: exponential backoff with full jitter from WEBHOOK_RETRY_BASE_SECONDS, capped at
WEBHOOK_RETRY_CAP_SECONDS, honouring a 429/503's Retry-After, up to the subscriber's
`max_attempts`; then the delivery is `failed` and an operator may redeliver it (audited).
Redirects are not followed and response bodies are not kept: the delivery log records the
status, a short error and the time each attempt took.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import stat
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import urllib3
from sqlmodel import Session, col, select

from governance import __version__
from governance.audit.cursors import entries_after, locked_cursor
from governance.audit.models import AuditEntry
from governance.audit.openlineage import Emitter
from governance.audit.service import Actor, format_time, record
from governance.db import Database, utcnow
from governance.domains.settings import EVENT_TYPES, Subscriber, subscribers
from governance.errors import Conflict, NotFound
from governance.webhooks.models import (
    AttemptRead,
    DeliveryRead,
    DeliveryState,
    WebhookAttempt,
    WebhookDelivery,
)

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
CURSOR = "webhooks"
SECRET_ENV = "GOVERNANCE_WEBHOOK_SECRET_"  # noqa: S105 - a variable name
LEASE_SECONDS = 120
QUEUE_BATCH = 500
SEND_BATCH = 50
ERROR_CHARS = 300


class SecretError(RuntimeError):
    """A subscriber's secret is missing or unsafe to use."""


# --- secrets ----------------------------------------------------------------------------------


def secret_path(home: str | Path, name: str) -> Path:
    return Path(home) / "secrets" / "webhooks" / f"{name}.key"


def env_name(name: str) -> str:
    return SECRET_ENV + name.upper().replace("-", "_")


def create_secret(home: str | Path, name: str, *, rotate: bool = False) -> str:
    """Make a subscriber's signing secret in a 0600 file and return it (to hand over once)."""
    path = secret_path(home, name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if rotate else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise Conflict(
            f"subscriber {name!r} already has a secret; rotate it to replace it"
        ) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    os.chmod(path, 0o600)
    return value


def read_secret(home: str | Path, name: str, environ: Mapping[str, str] = os.environ) -> bytes:
    """The raw key of a subscriber's `whsec_` secret, from the environment or its 0600 file."""
    text = environ.get(env_name(name))
    if not text:
        path = secret_path(home, name)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise SecretError(
                f"no signing secret for subscriber {name!r}: set {env_name(name)} or run "
                f"`govern webhooks secret {name}`"
            ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(f"{path} is readable by others; chmod 600 it")
        text = path.read_text().strip()
    try:
        key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise SecretError(f"the secret of subscriber {name!r} is not whsec_<base64>") from None
    if len(key) < 24:
        raise SecretError(f"the secret of subscriber {name!r} is shorter than 24 bytes")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: str) -> str:
    """The Standard Webhooks `webhook-signature` header value."""
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# --- queuing ----------------------------------------------------------------------------------


def payload_for(entry: AuditEntry, event_type: str) -> dict[str, Any]:
    """The event as sent: what changed, who did it, and the audit entry that proves it (its
    details hold hashes, numbers and names, never dataset content or prompts)."""
    details = json.loads(entry.details)
    return {
        "type": event_type,
        "timestamp": format_time(entry.time),
        "data": {
            "domain": entry.domain,
            "object": entry.object,
            "principal": entry.principal,
            "decision": entry.decision,
            "details": details,
            "audit": {
                "seq": entry.seq,
                "leaf_hash": entry.leaf_hash,
                "policy_hash": entry.policy_hash,
            },
        },
    }


def enqueue(session: Session, policy_dir: str | Path, batch: int = QUEUE_BATCH) -> int:
    """Queue the events of audit entries committed since the last call; return how many
    deliveries were added."""
    cursor = locked_cursor(session, CURSOR)
    configured = subscribers(policy_dir)
    entries, position = entries_after(session, cursor.audit_seq, batch, EVENT_TYPES)
    added = 0
    now = utcnow()
    for entry in entries:
        event_type = EVENT_TYPES[entry.action]
        if entry.decision == "deny":  # a refused call changed nothing
            continue
        for name, (domain, subscriber) in configured.items():
            if domain != entry.domain or event_type not in subscriber.events:
                continue
            session.add(
                WebhookDelivery(
                    uid=f"msg_{uuid.uuid4().hex}",
                    subscriber=name,
                    domain=domain,
                    event_type=event_type,
                    audit_seq=entry.seq,
                    payload=json.dumps(payload_for(entry, event_type), separators=(",", ":")),
                    created_at=now,
                    next_attempt_at=now,
                )
            )
            added += 1
    cursor.audit_seq = position
    session.add(cursor)
    session.commit()
    return added


# --- sending ----------------------------------------------------------------------------------


def backoff_seconds(
    attempt: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Full-jitter exponential backoff before attempt `attempt + 1`."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def _retry_after(headers: Mapping[str, str], cap: float) -> float | None:
    value = headers.get("Retry-After")
    if value and value.strip().isdigit():
        return min(cap, float(value.strip()))
    return None


class Sender:
    """Sends due deliveries: one HTTP pool, the settings, and the clock (tests move it)."""

    def __init__(
        self,
        settings: Mapping[str, Any],
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.home = settings["GOVERNANCE_HOME"]
        self.policy_dir = settings["GOVERNANCE_POLICY_DIR"]
        self.base = float(settings["WEBHOOK_RETRY_BASE_SECONDS"])
        self.cap = float(settings["WEBHOOK_RETRY_CAP_SECONDS"])
        self.clock = clock
        self.environ = environ
        self.http = urllib3.PoolManager(
            retries=False, headers={"User-Agent": f"governance-webhooks/{__version__}"}
        )

    def claim(self, session: Session, limit: int = SEND_BATCH) -> list[WebhookDelivery]:
        now = self.clock()
        table = WebhookDelivery.__table__
        due = session.exec(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.state == DeliveryState.PENDING)
            .where(WebhookDelivery.next_attempt_at <= now)
            .where(
                sa.or_(
                    col(WebhookDelivery.lease_until).is_(None), WebhookDelivery.lease_until < now
                )
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        ).all()
        claimed = []
        for delivery_id in due:
            taken = session.execute(
                sa.update(table)
                .where(table.c.id == delivery_id, table.c.state == DeliveryState.PENDING)
                .where(sa.or_(table.c.lease_until.is_(None), table.c.lease_until < now))
                .values(lease_until=now + dt.timedelta(seconds=LEASE_SECONDS))
            ).rowcount
            session.commit()
            held = (
                session.get(WebhookDelivery, delivery_id, populate_existing=True) if taken else None
            )
            if held is not None:
                claimed.append(held)
        return claimed

    def send_due(self, session: Session, limit: int = SEND_BATCH) -> dict[str, int]:
        """Attempt every due delivery once; return counts by outcome."""
        counts = {"delivered": 0, "retrying": 0, "failed": 0}
        configured = subscribers(self.policy_dir)
        for delivery in self.claim(session, limit):
            outcome = self.attempt(session, delivery, configured.get(delivery.subscriber))
            counts[outcome] += 1
        return counts

    def attempt(
        self,
        session: Session,
        delivery: WebhookDelivery,
        found: tuple[str, Subscriber] | None,
    ) -> str:
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        wait: float | None = None
        subscriber = found[1] if found and found[0] == delivery.domain else None
        if subscriber is None:
            error = "subscriber is no longer configured for this domain"
        else:
            try:
                key = read_secret(self.home, subscriber.name, self.environ)
                timestamp = int(self.clock().timestamp())
                response = self.http.request(
                    "POST",
                    subscriber.url,
                    body=delivery.payload.encode(),
                    headers={
                        "Content-Type": "application/json",
                        "webhook-id": delivery.uid,
                        "webhook-timestamp": str(timestamp),
                        "webhook-signature": sign(key, delivery.uid, timestamp, delivery.payload),
                    },
                    timeout=urllib3.Timeout(total=subscriber.timeout_seconds),
                    redirect=False,
                    preload_content=False,
                )
                status = response.status
                response.drain_conn()
                response.release_conn()
                if not 200 <= status < 300:
                    error = f"answered {status}"
                    if status in (429, 503):
                        wait = _retry_after(response.headers, self.cap)
            except SecretError as exc:
                error = str(exc)
            except urllib3.exceptions.HTTPError as exc:
                error = f"{type(exc).__name__}: could not deliver"
        finished = self.clock()
        number = (
            session.exec(
                select(sa.func.max(WebhookAttempt.number)).where(
                    WebhookAttempt.delivery_id == delivery.id
                )
            ).one()
            or 0
        ) + 1
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                number=number,
                at=finished,
                status_code=status,
                error=error[:ERROR_CHARS] if error else None,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
        )
        delivery.attempts += 1
        delivery.last_status = status
        delivery.last_error = error[:ERROR_CHARS] if error else None
        delivery.lease_until = None
        if error is None:
            delivery.state = DeliveryState.DELIVERED
            delivery.delivered_at = finished
            outcome = "delivered"
        elif subscriber is None or delivery.attempts >= subscriber.max_attempts:
            delivery.state = DeliveryState.FAILED
            outcome = "failed"
        else:
            delay = (
                wait
                if wait is not None
                else backoff_seconds(delivery.attempts, self.base, self.cap)
            )
            delivery.next_attempt_at = finished + dt.timedelta(seconds=delay)
            outcome = "retrying"
        session.add(delivery)
        session.commit()
        if outcome != "delivered":
            log.warning(
                "webhook %s to %s (%s): attempt %d %s",
                delivery.uid, delivery.subscriber, delivery.event_type, delivery.attempts,
                f"failed: {error}" if outcome == "failed" else f"will be retried: {error}",
            )  # fmt: skip
        return outcome

    def close(self) -> None:
        self.http.clear()


def pump(db: Database, sender: Sender) -> dict[str, int]:
    """One pass: queue new events, then send what is due."""
    with db.session_scope() as session:
        queued = enqueue(session, sender.policy_dir)
    with db.session_scope() as session:
        counts = sender.send_due(session)
    return {"queued": queued, **counts}


class Dispatcher(threading.Thread):
    """Beside a job runner, every WEBHOOK_POLL_SECONDS: queue and send lifecycle webhooks,
    and emit OpenLineage events when an endpoint or file is configured; until stopped."""

    def __init__(self, db: Database, settings: Mapping[str, Any]) -> None:
        super().__init__(name="log-consumers", daemon=True)
        self.db = db
        self.sender = Sender(settings)
        self.emitter = Emitter(dict(settings))
        self.poll = float(settings["WEBHOOK_POLL_SECONDS"])
        self.stopping = threading.Event()

    def pass_once(self) -> None:
        pump(self.db, self.sender)
        if self.emitter.enabled:
            with self.db.session_scope() as session:
                self.emitter.pump(session)

    def run(self) -> None:
        delay = self.poll
        while not self.stopping.wait(delay):
            try:
                self.pass_once()
                delay = self.poll
            except Exception:  # The database or a receiver went away: wait it out.
                log.exception("webhook or lineage pass failed; retrying")
                delay = min(60.0, delay * 2)
        self.sender.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


# --- reading and redelivering -------------------------------------------------------------------


def delivery_read(
    session: Session, delivery: WebhookDelivery, with_log: bool = False
) -> DeliveryRead:
    attempts = None
    if with_log:
        attempts = [
            AttemptRead(
                number=a.number,
                at=format_time(a.at),
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
            )
            for a in session.exec(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == delivery.id)
                .order_by(WebhookAttempt.number)
            )
        ]
    return DeliveryRead(
        uid=delivery.uid,
        subscriber=delivery.subscriber,
        domain=delivery.domain,
        event_type=delivery.event_type,
        audit_seq=delivery.audit_seq,
        state=delivery.state,
        attempts=delivery.attempts,
        created_at=format_time(delivery.created_at),
        next_attempt_at=(
            format_time(delivery.next_attempt_at)
            if delivery.state == DeliveryState.PENDING
            else None
        ),
        delivered_at=format_time(delivery.delivered_at) if delivery.delivered_at else None,
        last_status=delivery.last_status,
        last_error=delivery.last_error,
        log=attempts,
    )


def list_deliveries(
    session: Session,
    domains: list[str],
    *,
    state: str | None = None,
    subscriber: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(col(WebhookDelivery.domain).in_(domains))
    if state:
        query = query.where(WebhookDelivery.state == state)
    if subscriber:
        query = query.where(WebhookDelivery.subscriber == subscriber)
    if before_id:
        query = query.where(WebhookDelivery.id < before_id)
    return list(session.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit)))


def find_delivery(session: Session, uid: str) -> WebhookDelivery:
    found = session.exec(select(WebhookDelivery).where(WebhookDelivery.uid == uid)).first()
    if found is None:
        raise NotFound(f"webhook delivery {uid!r} not found")
    return found


def redeliver(session: Session, delivery: WebhookDelivery, actor: Actor) -> WebhookDelivery:
    """Send a delivery again (the same id and body, a fresh count of attempts); audited."""
    if delivery.state == DeliveryState.PENDING:
        raise Conflict(f"webhook delivery {delivery.uid} is already waiting to be sent")
    was = delivery.state
    delivery.state = DeliveryState.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    delivery.lease_until = None
    session.add(delivery)
    record(
        session,
        actor,
        "webhook.redeliver",
        f"webhook/{delivery.uid}",
        delivery.domain,
        details={"subscriber": delivery.subscriber, "event": delivery.event_type, "was": was},
    )
    return delivery
