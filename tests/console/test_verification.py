"""The audit page's checkpoint status: verified in the background, resumed, failures kept."""

from __future__ import annotations

import sqlalchemy as sa

from governance import runtime
from governance.audit.models import AuditEntry
from governance.audit.service import AuditEvent
from governance.db import get_db
from governance.flows.log_verification import CheckpointStatus


def events(start: int, count: int) -> list[AuditEvent]:
    return [AuditEvent("tests", "probe", f"thing/{i}", None, "ok") for i in range(start, count)]


def test_the_status_verifies_in_the_background_resumes_and_keeps_a_failure(app):
    audit_log = runtime.of(app).audit_log
    db = get_db(app)
    status = CheckpointStatus(db, audit_log.signing_key.public_key())
    with db.unit_of_work() as session:
        assert status.view(session).has_checkpoint is False
        audit_log.append_many(events(0, 40))
        first = audit_log.checkpoint().tree_size
        view = status.view(session, wait=0)  # answers at once, work under way or just done
        assert view.running_upto in (first, None)
        status.worker.join()
        view = status.view(session)
        assert view.result.verified_upto == first and view.problem is None

        audit_log.append_many(events(40, 60))
        second = audit_log.checkpoint().tree_size
        view = status.view(session)
        assert view.result.verified_upto == second and view.result.entries == second

        # Tampering before the resumed point is found by a run from entry 1, and the failure
        # stays until someone asks again.
        with db.engine.begin() as conn:
            conn.execute(
                sa.update(AuditEntry.__table__)
                .where(AuditEntry.__table__.c.seq == 2)
                .values(principal="mallory")
            )
        assert status.view(session).problem is None
        view = status.view(session, from_start=True)
        assert "audit entry 2 was altered" in view.problem
        audit_log.append_many(events(60, 70))
        audit_log.checkpoint()
        assert "audit entry 2 was altered" in status.view(session).problem
