# ruff: noqa: F811 (pytest fixtures imported from the model pipeline tests)
"""Console fixtures: the pipeline's world, plus a second domain's data and open requests."""

from __future__ import annotations

import json
import re

import pytest

from tests.factories import principal_token
from tests.models.test_pipeline import (  # noqa: F401 (fixtures)
    FAMILY,
    app,
    call,
    live,
    scanner,
    tiny,
    world,
)

SMB_FAMILY = "ledger-helper"
SMB_RECORDS = [
    {"prompt": f"Where does expense {i} go on Schedule C?", "completion": f"Line {i + 8}."}
    for i in range(1, 12)
] + [{"text": "Vendor Tomasz Wojcik, EIN 12-3456789, was paid $900 for bookkeeping."}]


def sign_in(client, token: str, next_path: str = "/console/"):
    """Sign a test client in through the sign-in form; return the redirect response."""
    page = client.get("/console/sign-in")
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/console/sign-in", data={"csrf_token": nonce, "token": token, "next": next_path}
    )


def csrf_of(page_text: str) -> str:
    """The session's CSRF token, as every signed-in page carries it in the sign-out form."""
    return re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page_text).group(1)


@pytest.fixture
def console_world(app, client, world):
    """Open requests in both domains: morgan's in consumer-tax, riley's in smb-accounting."""
    for name in ("riley", "audrey", "nobody"):
        world[name] = principal_token(app, name)
    status, request = call(
        client,
        "morgan",
        world,
        "POST",
        "/api/v1/approvals/dataset-use",
        json={"dataset_id": world["dataset"], "version": 1, "family": FAMILY},
    )
    assert status == 201, request
    world["request"] = request["uid"]
    status, books = call(
        client,
        "sam",
        world,
        "POST",
        "/api/v1/domains/smb-accounting/datasets",
        json={"name": "books"},
    )
    assert status == 201
    world["smb_dataset"] = books["id"]
    status, _ = call(
        client,
        "sam",
        world,
        "POST",
        f"/api/v1/datasets/{books['id']}/versions",
        query_string={"tax_year": 2025},
        data=b"".join(json.dumps(r).encode() + b"\n" for r in SMB_RECORDS),
    )
    assert status == 201
    scans = f"/api/v1/datasets/{books['id']}/versions/1/scans"
    status, _ = call(client, "sam", world, "POST", scans)
    assert status == 201
    status, family = call(
        client,
        "riley",
        world,
        "POST",
        "/api/v1/domains/smb-accounting/models",
        json={"name": SMB_FAMILY, "base_model": "tiny-llama"},
    )
    assert status == 201, family
    status, request = call(
        client,
        "riley",
        world,
        "POST",
        "/api/v1/approvals/dataset-use",
        json={"dataset_id": books["id"], "version": 1, "family": SMB_FAMILY},
    )
    assert status == 201, request
    world["smb_request"] = request["uid"]
    return world
