"""The service's audit log: one gap-free sequence, entries bound to their state changes, and
verification that names what was tampered with."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from audit.bundle import VerificationError
from governance import runtime
from governance.accounts import service as accounts
from governance.audit.models import AuditEntry, AuditHead
from governance.audit.service import AuditEvent, TreeCache, log_size
from governance.db import get_db
from governance.errors import Conflict
from governance.flows.log_export import verify_log
from tests.factories import TEST_ACTOR


def event(i: int) -> AuditEvent:
    return AuditEvent(
        principal=f"p{i % 3}",
        action="read",
        object="domain",
        domain="consumer-tax",
        decision="allow" if i % 2 else "deny",
        policy_hash="0" * 64,
        request_id=f"r{i}",
        details={"i": i, "note": "naïve ünïcode"},
    )


@pytest.fixture
def audit_log(app):
    log = runtime.of(app).audit_log
    yield log
    log.close()


@pytest.fixture
def session(app):
    with get_db(app).unit_of_work() as s:
        yield s


def seqs(session) -> list[int]:
    return list(session.exec(sa.select(AuditEntry.seq).order_by(AuditEntry.seq)).scalars())


def test_appends_form_one_sequence_and_verify(audit_log, session):
    start = log_size(session)
    assigned = audit_log.append_many([event(i) for i in range(50)])
    assert assigned == list(range(start + 1, start + 51))
    checkpoint = audit_log.checkpoint()
    assert checkpoint.tree_size == start + 50
    result = verify_log(session, audit_log.signing_key.public_key())
    assert result.entries == start + 50 and result.verified_upto == start + 50
    assert seqs(session) == list(range(1, start + 51))


def test_the_writer_survives_the_database_dropping_its_idle_connection(audit_log, session, backend):
    """The writer keeps one connection between batches; if the database dropped it while it
    was idle, the next batch runs on a fresh one and nothing is written twice."""
    if backend.name != "postgresql":
        pytest.skip("needs a server that can end a session")
    start = log_size(session)
    assert audit_log.append_many([event(1), event(2)]) == [start + 1, start + 2]
    cursor = audit_log._connection.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    pid = cursor.fetchone()[0]
    audit_log._connection.rollback()
    session.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    session.commit()
    assert audit_log.append(event(3)) == start + 3
    assert seqs(session) == list(range(1, start + 4))
    assert verify_log(session, audit_log.signing_key.public_key()).entries == start + 3


def test_a_state_change_and_its_entry_commit_together(app, session):
    before = log_size(session)
    accounts.create_principal(session, "casey", actor=TEST_ACTOR)
    assert log_size(session) == before + 1
    entry = session.get(AuditEntry, before + 1)
    assert (entry.action, entry.object, entry.principal) == (
        "principal.create",
        "principal/casey",
        "tests",
    )
    with pytest.raises(Conflict):
        accounts.create_principal(session, "casey", actor=TEST_ACTOR)
    # The refused change left no entry and no gap.
    assert log_size(session) == before + 1
    assert seqs(session) == list(range(1, before + 2))


def test_tokens_and_secrets_never_enter_the_log(app, session):
    principal = accounts.create_principal(session, "casey", actor=TEST_ACTOR)
    _record, token = accounts.issue_token(session, principal, expires_at=None, actor=TEST_ACTOR)
    rows = session.exec(sa.select(AuditEntry)).scalars().all()
    assert all(token not in r.details and token[4:] not in r.details for r in rows)
    with pytest.raises(ValueError, match="hash them"):
        AuditEvent("p", "query", "model/x", "d", "allow", details={"prompt": "my SSN is ..."})


@pytest.fixture
def signed_log(audit_log, session):
    """A log of exactly 30 entries under checkpoints at 20 and 30."""
    session.execute(sa.delete(AuditEntry))
    session.execute(sa.update(AuditHead).values(size=0))
    session.commit()
    audit_log.tree = TreeCache()
    audit_log.append_many([event(i) for i in range(20)])
    audit_log.checkpoint()
    audit_log.append_many([event(i) for i in range(20, 30)])
    audit_log.checkpoint()
    return audit_log.signing_key.public_key()


def test_a_changed_entry_is_named(session, signed_log):
    session.execute(sa.update(AuditEntry).where(AuditEntry.seq == 7).values(principal="mallory"))
    session.commit()
    with pytest.raises(VerificationError, match="entry 7 was altered") as caught:
        verify_log(session, signed_log)
    assert caught.value.seq == 7


def test_a_changed_entry_with_a_recomputed_hash_breaks_its_checkpoint(session, signed_log):
    from audit.log import canonical
    from audit.merkle import leaf_hash
    from governance.audit.service import row_entry

    row = session.get(AuditEntry, 25)
    row.decision = "allow" if row.decision == "deny" else "deny"
    row.leaf_hash = leaf_hash(canonical(row_entry(row))).hex()
    session.add(row)
    session.commit()
    with pytest.raises(VerificationError, match=r"entries 21\.\.30") as caught:
        verify_log(session, signed_log)
    assert caught.value.seq == 21


def test_a_deleted_entry_is_named(session, signed_log):
    session.execute(sa.delete(AuditEntry).where(AuditEntry.seq == 12))
    session.commit()
    with pytest.raises(VerificationError, match="entry 12 is missing"):
        verify_log(session, signed_log)


def test_an_inserted_entry_is_caught(session, signed_log):
    # Shift entries 15.. up by one to make room, as someone inserting a row would.
    for seq in sorted(seqs(session), reverse=True):
        if seq >= 15:
            session.execute(sa.update(AuditEntry).where(AuditEntry.seq == seq).values(seq=seq + 1))
    session.commit()
    with pytest.raises(VerificationError, match="entry 15 is missing"):
        verify_log(session, signed_log)


def test_reordered_entries_are_caught(session, signed_log):
    a, b = session.get(AuditEntry, 3), session.get(AuditEntry, 4)
    fields = (
        "time",
        "principal",
        "action",
        "object",
        "domain",
        "decision",
        "request_id",
        "details",
        "leaf_hash",
    )
    values_a = {f: getattr(a, f) for f in fields}
    values_b = {f: getattr(b, f) for f in fields}
    session.execute(sa.update(AuditEntry).where(AuditEntry.seq == 3).values(**values_b))
    session.execute(sa.update(AuditEntry).where(AuditEntry.seq == 4).values(**values_a))
    session.commit()
    with pytest.raises(VerificationError, match="entry 3 was altered"):
        verify_log(session, signed_log)


def test_an_altered_checkpoint_is_caught(session, signed_log):
    from governance.audit.models import AuditCheckpoint

    session.execute(
        sa.update(AuditCheckpoint).where(AuditCheckpoint.tree_size == 20).values(root="00" * 32)
    )
    session.commit()
    with pytest.raises(VerificationError, match="checkpoint at tree size 20 has a bad signature"):
        verify_log(session, signed_log)


def test_the_writer_signs_a_checkpoint_after_a_burst_then_silence(app, session):
    import time

    from governance.audit.service import AuditLog, latest_checkpoint

    log = AuditLog(get_db(app), app.config["GOVERNANCE_HOME"], checkpoint_seconds=0.2)
    try:
        seq = log.append_many([event(i) for i in range(5)])[-1]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            session.expire_all()
            latest = latest_checkpoint(session)
            if latest is not None and latest.tree_size >= seq:
                break
            time.sleep(0.05)
        assert latest is not None and latest.tree_size >= seq
    finally:
        log.close()


def test_a_verification_goes_on_from_where_it_stopped(session, signed_log):
    first = verify_log(session, signed_log, upto=20)
    assert (first.entries, first.verified_upto) == (20, 20)
    resumed = verify_log(session, signed_log, resume=first.progress)
    whole = verify_log(session, signed_log)
    assert resumed.as_dict() == whole.as_dict()
    assert first.progress.compact.size == 20  # the caller's progress is not moved on
    # An entry after the resumed point is still checked; one before it is trusted, which is
    # what a resumed verification promises (the console offers a run from entry 1 as well).
    session.execute(sa.update(AuditEntry).where(AuditEntry.seq == 25).values(principal="eve"))
    session.execute(sa.update(AuditEntry).where(AuditEntry.seq == 5).values(principal="eve"))
    session.commit()
    with pytest.raises(VerificationError, match="entry 25 was altered"):
        verify_log(session, signed_log, resume=first.progress)
    with pytest.raises(VerificationError, match="entry 5 was altered"):
        verify_log(session, signed_log)


def test_a_checkpoint_after_a_verification_checks_only_what_lies_beyond_it(
    audit_log, session, signed_log
):
    """An export verifies the whole log, then signs: the signing rereads only the entries the
    verification did not cover, and still refuses an altered one among them."""
    from governance.audit.service import checkpoint_at, sign_checkpoint

    audit_log.append_many([event(i) for i in range(30, 36)])  # entries 31..36, no checkpoint
    session.execute(sa.update(AuditEntry).where(AuditEntry.seq == 34).values(principal="eve"))
    session.commit()
    key = audit_log.signing_key
    with pytest.raises(VerificationError, match="entry 34 was altered"):
        sign_checkpoint(session, key, TreeCache(), verified=32)
    with pytest.raises(VerificationError, match="entry 34 was altered"):
        sign_checkpoint(session, key, TreeCache())  # as the writer signs: from checkpoint 30
    session.rollback()
    assert checkpoint_at(session, 36) is None  # nothing was signed over the altered entry
    # What the caller vouches for is not read again: this is the export's own saving.
    assert sign_checkpoint(session, key, TreeCache(), verified=36).tree_size == 36
