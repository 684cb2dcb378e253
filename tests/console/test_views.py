"""The console over HTTP: sessions, CSRF, expiry, single sign-on, and the API's authorization."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

import pytest
import sqlalchemy as sa
from sqlmodel import select

from governance import runtime
from governance.app import create_app
from governance.approvals.models import ApprovalDecision, ApprovalRequest
from governance.audit.models import AuditEntry
from governance.console.models import ConsoleSession
from governance.db import get_db, utcnow
from tests.console.conftest import SMB_FAMILY, csrf_of, sign_in
from tests.factories import auth, close_app, principal_token, row_count, scan_receipt


def audit_rows(app, action: str, obj: str | None = None) -> list[AuditEntry]:
    with get_db(app).unit_of_work() as session:
        statement = select(AuditEntry).where(AuditEntry.action == action)
        if obj is not None:
            statement = statement.where(AuditEntry.object == obj)
        rows = session.exec(statement).all()
        session.expunge_all()
        return rows


def decisions_on(app, uid: str) -> int:
    """How many decisions a request has (the world's base model was approved beforehand)."""
    with get_db(app).unit_of_work() as session:
        request = session.exec(select(ApprovalRequest).where(ApprovalRequest.uid == uid)).one()
        return len(
            session.exec(
                select(ApprovalDecision).where(ApprovalDecision.request_id == request.id)
            ).all()
        )


def details(entry: AuditEntry) -> dict:
    return json.loads(entry.details) if isinstance(entry.details, str) else entry.details


def only_session(app) -> ConsoleSession:
    with get_db(app).unit_of_work() as session:
        row = session.exec(select(ConsoleSession)).one()
        session.expunge(row)
        return row


def age_session(app, **changes) -> None:
    with get_db(app).engine.begin() as conn:
        conn.execute(sa.update(ConsoleSession.__table__).values(**changes))


def test_pages_need_a_session(client):
    response = client.get("/console/approvals?state=pending")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in?next=")
    assert "state%3Dpending" in response.headers["Location"]
    # A form posted without a session is refused, not redirected, and changes nothing.
    response = client.post(f"/console/approvals/{'a' * 32}/decisions", data={"decision": "approve"})
    assert response.status_code == 401
    assert "text/html" in response.content_type


def test_sign_in_sets_a_hardened_cookie_and_sign_out_ends_the_session(app, client, world):
    response = sign_in(client, world["priya"], "/console/approvals")
    assert response.status_code == 302 and response.headers["Location"] == "/console/approvals"
    cookie = next(
        c for c in response.headers.getlist("Set-Cookie") if c.startswith("governance_console=")
    )
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the next test for TLS
    value = cookie.split(";")[0].split("=", 1)[1]
    row = only_session(app)
    # Only the hash of the cookie is stored, and the session is bound to the token's principal.
    assert row.session_hash == hashlib.sha256(value.encode()).hexdigest()
    assert value not in str(row.model_dump()) and row.via == "token" and row.token_id
    page = client.get("/console/")
    assert page.status_code == 200 and "Signed in as" in page.text and "priya" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert [e.principal for e in audit_rows(app, "console.sign-in")] == ["priya"]

    response = client.post("/console/sign-out", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 302
    assert only_session(app).ended_reason == "signed-out"
    assert [e.principal for e in audit_rows(app, "console.sign-out")] == ["priya"]
    # The old cookie no longer opens anything, even if a copy of it was kept.
    client.set_cookie("governance_console", value, path="/console")
    assert client.get("/console/").status_code == 302


def test_cookies_are_secure_behind_tls(config):
    app = create_app({**config, "TESTING": True, "CONSOLE_COOKIE_SECURE": "auto"})
    try:
        client = app.test_client()
        token = principal_token(app, "priya")
        page = client.get("/console/sign-in", base_url="https://console.example")
        assert "Secure" in page.headers["Set-Cookie"]
        response = sign_in(client, token, base_url="https://console.example")
        assert response.status_code == 302
        assert all("Secure" in c for c in response.headers.getlist("Set-Cookie"))
    finally:
        close_app(app)


def test_a_bad_token_is_refused_and_audited(app, client):
    response = sign_in(client, "gov_not-a-real-token")
    assert response.status_code == 401
    assert "That token was not accepted: unknown bearer token" in response.text
    assert row_count(app, "console_sessions") == 0
    denied = audit_rows(app, "authenticate")
    assert [(e.principal, e.decision, e.object) for e in denied] == [
        ("anonymous", "deny", "console")
    ]


def test_the_sign_in_form_needs_its_nonce(app, client, world):
    response = client.post("/console/sign-in", data={"token": world["priya"], "csrf_token": "x"})
    assert response.status_code == 400 and "expired" in response.text
    assert row_count(app, "console_sessions") == 0


def test_forms_need_the_session_csrf_token(app, client, console_world):
    world = console_world
    assert client.get("/console/").status_code == 302
    sign_in(client, world["priya"])
    for forged in ({}, {"csrf_token": "0" * 64}):
        response = client.post(
            f"/console/approvals/{world['request']}/decisions",
            data={"decision": "approve", "comment": "ok", **forged},
        )
        assert response.status_code == 400 and "csrf_failed" in response.text
        assert client.post("/console/sign-out", data=forged).status_code == 400
    assert decisions_on(app, world["request"]) == 0
    assert only_session(app).ended_at is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"last_seen_at": utcnow() - dt.timedelta(minutes=31)}, "idle"),
        ({"expires_at": utcnow() - dt.timedelta(seconds=1)}, "expired"),
    ],
)
def test_idle_and_expired_sessions_end(app, client, world, change, reason):
    sign_in(client, world["priya"])
    assert client.get("/console/approvals").status_code == 200
    age_session(app, **change)
    response = client.get("/console/approvals")
    assert response.status_code == 302 and f"ended={reason}" in response.headers["Location"]
    assert only_session(app).ended_reason == reason
    ended = audit_rows(app, "console.sign-out")
    assert [(e.principal, details(e)["reason"]) for e in ended] == [("priya", reason)]
    page = client.get(response.headers["Location"])
    assert "Sign in again" in page.text or "time limit" in page.text


def test_a_session_dies_with_its_token(app, client, world):
    sign_in(client, world["priya"])
    token_id = only_session(app).token_id
    status = client.delete(f"/api/v1/tokens/{token_id}", headers=auth(world["admin"])).status_code
    assert status == 200
    response = client.get("/console/")
    assert response.status_code == 302 and "ended=token-invalid" in response.headers["Location"]


def test_single_sign_on_is_off_by_default_and_trusts_only_its_proxies(config, world):
    header = {"X-Remote-User": "priya"}
    app = create_app({**config, "TESTING": True})
    try:
        assert app.test_client().get("/console/", headers=header).status_code == 302
    finally:
        close_app(app)
    app = create_app({**config, "TESTING": True, "CONSOLE_SSO_HEADER": "X-Remote-User"})
    try:
        client = app.test_client()
        page = client.get("/console/", headers=header)  # the test client comes from 127.0.0.1
        assert page.status_code == 200 and "priya" in page.text
        assert "governance_console=" in page.headers["Set-Cookie"]
        assert only_session(app).via == "sso"
        # The same header from anywhere but a trusted proxy signs nobody in.
        stranger = app.test_client()
        response = stranger.get(
            "/console/", headers=header, environ_base={"REMOTE_ADDR": "203.0.113.9"}
        )
        assert response.status_code == 302
        # The proxy names someone who is not a principal: refused (sent to sign in) and audited.
        response = app.test_client().get("/console/", headers={"X-Remote-User": "mallory"})
        assert response.status_code == 302 and "/console/sign-in" in response.headers["Location"]
        assert details(audit_rows(app, "authenticate")[-1])["via"] == "sso"
        # A different name from the proxy ends the old session and starts the new principal's.
        page = client.get("/console/", headers={"X-Remote-User": "lee"})
        assert page.status_code == 200 and ">lee<" in page.text
    finally:
        close_app(app)


# Listings filter to what the caller may read, as the API's do; everything else is refused.
CONSOLE_LISTINGS = ("/console/approvals", "/console/datasets", "/console/models")
CONSOLE_GETS = (
    "/console/approvals/{request}",
    "/console/domains/consumer-tax/datasets",
    "/console/models/tax-assistant",
    "/console/models/tax-assistant/versions/1",
    "/console/audit",
    "/console/audit/export?format=csv",
    "/console/access",
    "/console/access/who-may.csv",
    "/console/policy",
)


def test_a_principal_without_roles_sees_nothing(client, console_world):
    world = console_world
    sign_in(client, world["nobody"])
    home = client.get("/console/")
    assert home.status_code == 200 and "binds no role to you" in home.text
    for path in CONSOLE_GETS:
        response = client.get(path.format(request=world["request"]))
        assert response.status_code in (403, 404), path
        assert "Maria" not in response.text and "returns" not in response.text
    for path in CONSOLE_LISTINGS:
        response = client.get(path)
        assert response.status_code == 200 and 'class="empty"' in response.text, path
        assert world["request"][:10] not in response.text and "consumer-tax" not in response.text


def test_another_domains_objects_answer_403_or_404_never_content(client, console_world):
    world = console_world
    sign_in(client, world["morgan"])  # an ml-engineer in consumer-tax only
    own = client.get(f"/console/approvals/{world['request']}")
    assert own.status_code == 200 and "returns v1" in own.text
    foreign = {
        f"/console/approvals/{world['smb_request']}": 404,
        f"/console/models/{SMB_FAMILY}": 404,
        f"/console/models/{SMB_FAMILY}/versions/1": 404,
        "/console/domains/smb-accounting/datasets": 403,
    }
    for path, status in foreign.items():
        response = client.get(path)
        assert response.status_code == status, path
        assert "books" not in response.text and "Wojcik" not in response.text
    listing = client.get("/console/approvals")
    assert world["request"][:10] in listing.text and world["smb_request"][:10] not in listing.text
    assert "smb-accounting" not in client.get("/console/datasets").text


def test_a_reviewer_decides_in_the_console_as_through_the_api(app, client, console_world):
    world = console_world
    sign_in(client, world["priya"])
    page = client.get(f"/console/approvals/{world['request']}")
    assert page.status_code == 200
    assert "You decide as <strong>privacy-reviewer</strong>" in page.text
    # The receipt's counts and redacted samples are shown; the raw values never are.
    assert "US_SSN" in page.text and "&lt;US_SSN&gt;" in page.text
    assert "536-22-8741" not in page.text and "Maria Gonzalez" not in page.text
    csrf = csrf_of(page.text)
    url = f"/console/approvals/{world['request']}/decisions"
    response = client.post(url, data={"csrf_token": csrf, "decision": "approve", "comment": ""})
    assert response.status_code == 422 and "comment" in response.text
    # The error sits beside the field it is about, not at the top of a long page.
    assert 'id="comment-error"' in response.text and 'aria-invalid="true"' in response.text
    assert 'class="error" role="alert"' not in response.text
    assert decisions_on(app, world["request"]) == 0
    response = client.post(
        url, data={"csrf_token": csrf, "decision": "approve", "comment": "receipt checked"}
    )
    assert response.status_code == 302
    page = client.get(response.headers["Location"])
    assert "Your decision was recorded" in page.text and "receipt checked" in page.text
    entry = audit_rows(app, "approval.decide", f"approval/{world['request']}")[0]
    assert (entry.principal, entry.decision) == ("priya", "approve")
    assert f"#{entry.seq}" in page.text
    assert "has already decided" in page.text  # the form is gone: one person, one role

    # The requester is refused by the same rule the API applies, even posting the form by hand.
    client.post("/console/sign-out", data={"csrf_token": csrf})
    sign_in(client, world["morgan"])
    page = client.get(f"/console/approvals/{world['request']}")
    assert "morgan requested this request and may not decide it" in page.text
    assert "<textarea" not in page.text
    response = client.post(
        url, data={"csrf_token": csrf_of(page.text), "decision": "approve", "comment": "mine"}
    )
    assert response.status_code == 403 and "separation_of_duties" in response.text
    assert decisions_on(app, world["request"]) == 1


def test_the_audit_page_reports_the_verified_checkpoint_and_catches_tampering(
    app, client, console_world
):
    world = console_world
    client.post("/api/v1/audit/checkpoints", headers=auth(world["audrey"]))
    sign_in(client, world["audrey"])
    page = client.get("/console/audit?principal=morgan")
    assert page.status_code == 200
    assert "Verified up to entry" in page.text and "signed at" in page.text
    assert "approval.request" in page.text or "approval" in page.text
    with get_db(app).engine.begin() as conn:
        conn.execute(
            sa.update(AuditEntry.__table__)
            .where(AuditEntry.__table__.c.seq == 3)
            .values(principal="mallory")
        )
    page = client.get("/console/audit?verify=all")
    assert "Verification failed" in page.text and "audit entry 3 was altered" in page.text


def test_the_policy_page_shows_the_hash_and_the_matrix(app, client, world):
    world["audrey"] = principal_token(app, "audrey")
    sign_in(client, world["audrey"])
    page = client.get("/console/policy")
    assert runtime.of(app).authorizer.policy.hash in page.text
    assert "Effective permissions in consumer-tax" in page.text
    assert "upload" in page.text  # casey's dataset upload appears in the matrix


def test_unknown_console_paths_answer_a_page(client, world):
    sign_in(client, world["priya"])
    response = client.get("/console/no/such/page")
    assert response.status_code == 404 and "text/html" in response.content_type


def test_a_domains_datasets_show_scan_status_and_tombstones(client, console_world):
    world = console_world
    response = client.delete(
        f"/api/v1/datasets/{world['dataset']}/versions/1",
        json={"reason": "tax year 2025 withdrawn"},
        headers=auth(world["casey"]),
    )
    assert response.status_code == 200
    sign_in(client, world["priya"])
    page = client.get("/console/domains/consumer-tax/datasets")
    assert page.status_code == 200
    assert "Versions of returns" in page.text and "2025" in page.text
    assert "deleted by casey" in page.text and "tax year 2025 withdrawn" in page.text
    assert "redacted" in page.text and "US_SSN 1" in page.text
    assert 'aria-label="PII findings per entity type across the versions of returns"' in page.text
    smb = client.get("/console/domains/smb-accounting/datasets")  # priya reviews both domains
    assert smb.status_code == 200 and "books" in smb.text


def test_an_auditor_downloads_exports_and_signed_reports(client, console_world):
    world = console_world
    sign_in(client, world["audrey"])
    csv_export = client.get("/console/audit/export?format=csv&principal=morgan")
    assert csv_export.status_code == 200 and csv_export.mimetype == "text/csv"
    lines = csv_export.get_data(as_text=True).splitlines()
    assert lines[0].startswith("seq,") and len(lines) > 1
    assert all(",morgan," in line for line in lines[1:])
    jsonl = client.get("/console/audit/export?format=jsonl&domain=smb-accounting")
    rows = [json.loads(line) for line in jsonl.get_data(as_text=True).splitlines()]
    assert rows and {r["domain"] for r in rows} == {"smb-accounting"}
    assert client.get("/console/audit/export?format=xml").status_code == 422
    bad = client.get("/console/audit?from=yesterday")
    assert bad.status_code == 422 and "from" in bad.text

    who_may = client.get("/console/access/who-may.csv")
    assert who_may.status_code == 200 and who_may.headers["X-Signature-Ed25519"]
    # Grants on model/* name the families they cover.
    text = who_may.get_data(as_text=True)
    assert "taxbot,consumer-tax,tax-assistant," in text
    assert f"ledgerbot,smb-accounting,{SMB_FAMILY}," in text
    who_did = client.get("/console/access/who-did.json?domain=consumer-tax")
    assert who_did.status_code == 200 and "signature" in who_did.get_json()
    assert "attachment" in who_did.headers["Content-Disposition"]
    # The form's zone-less period reads as UTC, in the download as on the page.
    period = client.get("/console/access/who-did.json?from=2020-01-01T00:00&to=2099-01-01T00:00")
    assert period.status_code == 200
    assert period.get_json()["report"]["filters"]["from"].startswith("2020-01-01T00:00:00+00:00")


def test_a_steward_reviews_quarantined_records_in_the_console(client, console_world):
    world = console_world
    records = [{"text": f"Question {i} about Schedule C line {i}."} for i in range(1, 9)]
    records.append({"text": "Ticket ref QK-55190 about Form 1040 line 9."})
    body = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    uploaded = client.post(
        f"/api/v1/datasets/{world['dataset']}/versions",
        query_string={"tax_year": 2026},
        data=body,
        content_type="application/x-ndjson",
        headers=auth(world["casey"]),
    )
    assert uploaded.status_code == 201, uploaded.get_json()
    number = uploaded.get_json()["version"]
    scans = f"/api/v1/datasets/{world['dataset']}/versions/{number}/scans"
    receipt = scan_receipt(client, scans, auth(world["casey"])).get_json()
    assert receipt["records_quarantined"] == 1 and receipt["canary_recall"] >= 0.95
    sign_in(client, world["casey"])
    path = f"/console/datasets/{world['dataset']}/versions/{number}/quarantine"
    page = client.get(path)
    assert page.status_code == 200
    assert "QK-#####" in page.text and "55190" not in page.text
    assert "quarantine_share" in page.text and "Canaries planted" in page.text
    refused = client.post(f"{path}/8", data={"decision": "keep"})
    assert refused.status_code in (400, 403)  # no CSRF token: nothing changes
    decided = client.post(f"{path}/8", data={"decision": "keep", "csrf_token": csrf_of(page.text)})
    assert decided.status_code == 302
    after = client.get(decided.headers["Location"])
    assert "keep by casey" in after.text
    rescanned = scan_receipt(client, scans, auth(world["casey"])).get_json()
    assert rescanned["records_kept"] == 1 and rescanned["sanitized_records"] == 9
    # The first version's scan found an SSN: the gate page charts findings per entity type.
    first = client.get(f"/console/datasets/{world['dataset']}/versions/1/quarantine")
    assert 'aria-label="PII findings per entity type in returns v1"' in first.text
    assert "<title>US_SSN: 1</title>" in first.text
    # The records the scan passed untouched are shown as a sample, digits masked.
    unflagged = re.search(r'data-testid="unflagged">(.*?)</ol>', first.text, re.S).group(1)
    assert 0 < unflagged.count("<li>") <= 5 and not re.search(r"\d", unflagged)
    assert "US_SSN" not in unflagged and "Gonzalez" not in unflagged  # none had a finding


def test_the_policy_page_shows_one_domain_at_a_time(app, client, world):
    world["audrey"] = principal_token(app, "audrey")
    sign_in(client, world["audrey"])
    page = client.get("/console/policy?domain=smb-accounting")
    assert page.status_code == 200
    assert "Effective permissions in smb-accounting" in page.text
    assert "Effective permissions in consumer-tax" not in page.text
    assert 'href="/console/policy?domain=consumer-tax"' in page.text
    assert client.get("/console/policy?domain=nowhere").status_code == 404
    assert client.get("/console/policy?page=x").status_code == 422


def test_an_auditor_writes_and_downloads_an_evidence_pack(app, client, console_world, tmp_path):
    from audit.evidence import verify_pack
    from governance import crypto
    from governance.workers.runner import run_pending

    world = console_world
    sign_in(client, world["casey"])
    page = client.get("/console/audit")
    assert "evidence-button" not in page.text  # a steward exports nothing
    refused = client.post(
        "/console/audit/evidence",
        data={"csrf_token": csrf_of(page.text), "from": "2026-01-01", "to": "2026-12-31"},
    )
    assert refused.status_code == 403

    sign_in(client, world["audrey"])
    page = client.get("/console/audit")
    assert 'data-testid="evidence-button"' in page.text
    token = csrf_of(page.text)
    backwards = client.post(
        "/console/audit/evidence",
        data={"csrf_token": token, "from": "2026-12-31", "to": "2026-01-01"},
    )
    assert backwards.status_code == 422 and "period" in backwards.text
    unknown = client.post(
        "/console/audit/evidence",
        data={"csrf_token": token, "from": "2020-01-01", "to": "2099-12-31", "family": "nope"},
    )
    assert unknown.status_code == 422 and "family" in unknown.text
    started = client.post(
        "/console/audit/evidence",
        data={"csrf_token": token, "from": "2020-01-01", "to": "2099-12-31"},
    )
    assert started.status_code == 302, started.text
    job_page = started.headers["Location"]
    waiting = client.get(job_page)
    assert waiting.status_code == 200 and 'http-equiv="refresh"' in waiting.text
    assert run_pending(runtime.of(app)) >= 1
    done = client.get(job_page)
    assert "succeeded" in done.text and 'data-testid="job-download"' in done.text
    download = client.get(job_page + "/file")
    assert download.status_code == 200 and download.mimetype == "application/gzip"
    assert "evidence-pack.tar.gz" in download.headers["Content-Disposition"]
    pack = tmp_path / "pack.tar.gz"
    pack.write_bytes(download.data)
    download.close()
    key = crypto.public_key_pem(runtime.of(app).audit_log.signing_key.public_key())
    assert verify_pack(pack, key).items > 0

    # Only its requester may follow or download it.
    sign_in(client, world["admin"])
    assert client.get(job_page).status_code == 404
    refused = client.get(job_page + "/file")
    assert refused.status_code == 404
    refused.close()
