"""The console in a real browser: Playwright drives Debian's Chromium against a live server.

Screenshots go to test-artifacts/console/ (GOVERNANCE_TEST_ARTIFACTS overrides the folder), so a
reviewer of a change can look at every page these flows pass through.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from sqlmodel import select

from governance import crypto
from governance.approvals.models import ApprovalDecision, ApprovalRequest
from governance.audit.models import AuditEntry
from governance.db import get_db
from tests.audit.test_log_views import verify_offline
from tests.console.conftest import SMB_FAMILY
from tests.factories import auth
from tests.pipeline import FAMILY, approve_data, train, worker

CHROMIUM = os.environ.get("GOVERNANCE_CHROMIUM", "/usr/bin/chromium")
# What Chromium needs on these machines (as root, offline): see the env page in the README.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("GOVERNANCE_TEST_ARTIFACTS", "test-artifacts")) / "console"
DESKTOP = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}
# Playwright waits 5 s by default for what an assertion expects. Under `make test` the two
# suites, trainers and the live server share two cores, and Swagger UI's render of the whole
# API description once took longer than that (a CI run on 8ab4baa failed there, never in a
# run alone): wait up to 30 s. An assertion that holds still passes at once.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(request, app):
    """Save a full-page screenshot named after the test, the step and the database."""
    backend = "sqlite" if app.config["GOVERNANCE_DATABASE_URL"].startswith("sqlite") else "pg"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shoot(page, step: str) -> Path:
        path = ARTIFACTS / f"{request.node.originalname}-{step}-{backend}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return shoot


def sign_in(page, live: str, token: str, start: str = "/console/") -> None:
    """Sign in through the form, as a person would: the console sends us there first."""
    page.goto(live + start)
    expect(page).to_have_url(f"{live}/console/sign-in?next={start.replace('/', '%2F')}")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("principal")).to_be_visible()


def test_a_privacy_reviewer_approves_a_request_in_the_browser(
    app, client, console_world, live, browser, shots
):
    world = console_world
    # The legal reviewer has approved already, so priya's approval completes the request.
    response = client.post(
        f"/api/v1/approvals/{world['request']}/decisions",
        json={"decision": "approve", "comment": "licence terms fine"},
        headers=auth(world["lee"]),
    )
    assert response.status_code == 201
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(live + "/console/approvals")
    shots(page, "1-sign-in")
    sign_in(page, live, world["priya"], "/console/approvals")
    expect(page).to_have_url(live + "/console/approvals")
    inbox = page.get_by_role("table", name="Pending requests that need a role you hold")
    expect(inbox).to_contain_text("returns v1 (tax year 2025) to train tax-assistant")
    shots(page, "2-inbox")

    inbox.get_by_role("link", name=world["request"][:10]).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Use of returns v1")
    expect(page.get_by_test_id("request-state")).to_have_text("pending")
    findings = page.get_by_role("table", name="Findings per entity type and field")
    expect(findings).to_contain_text("US_SSN")
    expect(page.locator("ol.samples")).to_contain_text("<US_SSN>")
    expect(page.locator("main")).not_to_contain_text("536-22-8741")
    expect(page.get_by_test_id("decision-lee")).to_contain_text("licence terms fine")
    shots(page, "3-request")

    page.get_by_label("Comment").fill("Receipt and redacted samples reviewed; SSNs removed.")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Your decision was recorded")
    expect(page.get_by_test_id("request-state")).to_have_text("approved")
    mine = page.get_by_test_id("decision-priya")
    expect(mine).to_contain_text("Receipt and redacted samples reviewed")
    with get_db(app).unit_of_work() as session:
        decision = session.exec(
            select(ApprovalDecision).where(ApprovalDecision.reviewer == "priya")
        ).one()
        entry = session.get(AuditEntry, decision.audit_seq)
        assert (entry.principal, entry.action, entry.decision) == (
            "priya",
            "approval.decide",
            "approve",
        )
    expect(mine.get_by_test_id("audit-entry")).to_have_text(f"#{entry.seq}")
    shots(page, "4-approved")
    context.close()


def test_a_self_approval_is_refused(app, console_world, live, browser, shots):
    world = console_world
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, live, world["morgan"])
    page.goto(f"{live}/console/approvals/{world['request']}")
    expect(page.get_by_test_id("blocked")).to_have_text(
        "morgan requested this request and may not decide it."
    )
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    shots(page, "1-no-form")
    # Posting the decision anyway, with this session's valid CSRF token, is refused too.
    csrf = page.locator("form.signout input[name=csrf_token]").get_attribute("value")
    refused = page.request.post(
        f"{live}/console/approvals/{world['request']}/decisions",
        form={"csrf_token": csrf, "decision": "approve", "comment": "looks fine to me"},
    )
    assert refused.status == 403
    assert "separation_of_duties" in refused.text()
    page.set_content(refused.text().replace('href="/console/', f'href="{live}/console/'))
    shots(page, "2-refused")
    with get_db(app).unit_of_work() as session:
        # None on this request (the world's base model was approved beforehand).
        request = session.exec(
            select(ApprovalRequest).where(ApprovalRequest.uid == world["request"])
        ).one()
        assert (
            session.exec(
                select(ApprovalDecision).where(ApprovalDecision.request_id == request.id)
            ).all()
            == []
        )
    context.close()


def test_another_domains_objects_requested_by_url(console_world, live, browser, shots):
    world = console_world
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, live, world["morgan"])  # consumer-tax only
    for path, status in (
        (f"/console/approvals/{world['smb_request']}", 404),
        (f"/console/models/{SMB_FAMILY}", 404),
        ("/console/domains/smb-accounting/datasets", 403),
    ):
        response = page.goto(live + path)
        assert response.status == status, path
        expect(page.locator("main")).not_to_contain_text("books")
        expect(page.locator("main")).not_to_contain_text("Wojcik")
    shots(page, "forbidden-domain")
    context.close()


def test_an_auditor_without_javascript_downloads_a_bundle_that_verifies_offline(
    app, client, console_world, live, browser, shots, tmp_path
):
    world = console_world
    signed = client.post("/api/v1/audit/checkpoints", headers=auth(world["audrey"]))
    assert signed.status_code == 201
    # Read-only pages must work with scripts off; the console ships none.
    context = browser.new_context(
        viewport=DESKTOP, java_script_enabled=False, accept_downloads=True
    )
    page = context.new_page()
    sign_in(page, live, world["audrey"], "/console/audit")
    status = page.get_by_test_id("checkpoint-status")
    expect(status).to_contain_text("Verified up to entry")
    expect(status).to_contain_text("signed at")
    page.get_by_label("Principal").fill("morgan")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("table", name="Entries by sequence number")).to_contain_text(
        "approval.request"
    )
    shots(page, "1-audit")

    with page.expect_download() as download:
        page.get_by_test_id("bundle-link").click()
    archive = tmp_path / "audit-bundle.tar.gz"
    download.value.save_as(archive)
    key = tmp_path / "service-key.pem"
    key.write_bytes(
        crypto.public_key_pem(crypto.load_signing_key(app.config["GOVERNANCE_HOME"]).public_key())
    )
    result = verify_offline(archive, "--public-key", str(key))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["verified"] is True

    page.get_by_role("link", name="Access reports").click()
    expect(page.get_by_role("table", name="Grants of query on models")).to_contain_text("taxbot")
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").first.click()
    assert download.value.suggested_filename == "who-may.csv"
    shots(page, "2-access")
    page.get_by_role("link", name="Policy").click()
    expect(page.get_by_test_id("policy-hash")).to_have_text(
        client.get("/api/v1/policy", headers=auth(world["audrey"])).get_json()["policy_hash"]
    )
    shots(page, "3-policy")
    context.close()


def test_keyboard_and_a_narrow_window(console_world, live, browser, shots):
    world = console_world
    context = browser.new_context(viewport=NARROW)
    page = context.new_page()
    sign_in(page, live, world["audrey"], "/console/audit")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Nothing but the tables' own scrollers may scroll sideways in a phone-sized window.
    for path in ("/console/audit", "/console/access", "/console/policy", "/console/approvals"):
        page.goto(live + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (path, overflow)
        shots(page, "narrow" + path.replace("/console/", "-"))
        if path == "/console/approvals":
            # The subject keeps a readable width; the table scrolls instead of squeezing it.
            widths = page.eval_on_selector_all(
                "td.subject", "cells => cells.map(c => c.offsetWidth)"
            )
            assert widths and min(widths) >= 150, widths
    context.close()


def test_the_lineage_graph_of_a_trained_version(app, client, world, live, browser, shots):
    approve_data(client, world)
    assert train(client, world)[0] == 201
    done = worker(live, world, "--once")
    _out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, live, world["lee"], f"/console/models/{FAMILY}")
    expect(page.get_by_role("table", name=f"Versions of {FAMILY}")).to_contain_text("evaluated")
    losses = page.get_by_role("img", name=f"loss of {FAMILY} across its versions")
    expect(losses).to_be_visible()
    expect(losses).to_contain_text("eval_loss")
    expect(losses).not_to_contain_text("lora")  # how it was made is not charted as quality
    expect(
        page.get_by_role("img", name=f"perplexity of {FAMILY} across its versions")
    ).to_be_visible()
    shots(page, "family-metrics")
    page.get_by_role("link", name="v1", exact=True).click()
    expect(page.get_by_role("table", name="Metrics")).to_contain_text("eval_loss")
    expect(page.get_by_role("table", name="Training configuration")).to_contain_text("lora")
    graph = page.get_by_role("img", name=f"Lineage of {FAMILY} version 1")
    expect(graph).to_be_visible()
    for text in ("tiny-llama", "returns v1", "verdict redacted", "approved", f"{FAMILY} v1"):
        expect(graph).to_contain_text(text)
    shots(page, "lineage")
    # The approval box is a link to the request that approved the data.
    graph.locator("a").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Use of returns v1")
    context.close()


def test_a_data_steward_sees_versions_scans_and_tombstones(client, world, live, browser, shots):
    uploaded = client.post(
        f"/api/v1/datasets/{world['dataset']}/versions",
        query_string={"tax_year": 2026},
        data=b'{"prompt": "What changed for 2026?", "completion": "The standard deduction."}\n',
        content_type="application/x-ndjson",
        headers=auth(world["casey"]),
    )
    assert uploaded.status_code == 201
    deleted = client.delete(
        f"/api/v1/datasets/{world['dataset']}/versions/1",
        json={"reason": "superseded by the 2026 upload"},
        headers=auth(world["casey"]),
    )
    assert deleted.status_code == 200
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, live, world["casey"])
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Datasets").click()
    expect(page.get_by_role("link", name="smb-accounting")).to_have_count(0)
    page.get_by_role("link", name="consumer-tax").click()
    versions = page.get_by_role("table", name="Versions of returns, newest first")
    expect(versions.get_by_role("row")).to_have_count(3)
    expect(versions).to_contain_text("not scanned")  # the 2026 version awaits its scan
    expect(versions).to_contain_text("deleted by casey")
    expect(versions).to_contain_text("superseded by the 2026 upload")
    chart = page.get_by_role(
        "img", name="PII findings per entity type across the versions of returns"
    )
    expect(chart).to_contain_text("US_SSN")
    shots(page, "datasets")
    context.close()


def test_the_api_docs_load_in_the_browser_without_credentials(live, browser, shots):
    """Swagger UI renders the API's description from assets served by the service itself."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    outside = []
    page.on(
        "request",
        lambda request: (
            outside.append(request.url) if not request.url.startswith((live, "data:")) else None
        ),
    )
    page.goto(live + "/docs/swagger")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("governance")
    expect(page.locator("#swagger-ui")).to_contain_text("/api/v1/datasets/{dataset_id}/versions")
    shots(page, "1-swagger")
    assert outside == []  # nothing fetched from anywhere but the service
    context.close()
