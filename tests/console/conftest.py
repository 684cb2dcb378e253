# ruff: noqa: F811 (pytest fixtures imported from the model pipeline tests)
"""Console fixtures: the pipeline's world, plus a second domain's data and open requests."""

from __future__ import annotations

import re

import pytest

from tests.factories import principal_token
from tests.pipeline import (  # noqa: F401 (fixtures)
    FAMILY,
    app,
    approve_base,
    call,
    live,
    request_data_use,
    scanned_dataset,
    scanner,
    world,
)

SMB_FAMILY = "ledger-helper"
SMB_RECORDS = [
    {"prompt": f"Where does expense {i} go on Schedule C?", "completion": f"Line {i + 8}."}
    for i in range(1, 12)
] + [{"text": "Vendor Tomasz Wojcik, EIN 12-3456789, was paid $900 for bookkeeping."}]


def sign_in(client, token: str, next_path: str = "/console/", **options):
    """Sign a test client in through the sign-in form; return the redirect response.

    `options` go to both requests (such as base_url="https://..." for TLS)."""
    page = client.get("/console/sign-in", **options)
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/console/sign-in",
        data={"csrf_token": nonce, "token": token, "next": next_path},
        **options,
    )


def csrf_of(page_text: str) -> str:
    """The session's CSRF token, as every signed-in page carries it in the sign-out form."""
    return re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page_text).group(1)


@pytest.fixture
def console_world(app, client, world):
    """Open requests in both domains: morgan's in consumer-tax, riley's in smb-accounting."""
    for name in ("riley", "audrey", "nobody"):
        world[name] = principal_token(app, name)
    world["request"] = request_data_use(client, world)
    world["smb_dataset"], _ = scanned_dataset(
        client, world, "sam", "smb-accounting", "books", SMB_RECORDS
    )
    approve_base(client, world, "tiny-llama", "smb-accounting", requester="riley")
    status, family = call(
        client,
        "riley",
        world,
        "POST",
        "/api/v1/domains/smb-accounting/models",
        json={"name": SMB_FAMILY, "base_model": "tiny-llama"},
    )
    assert status == 201, family
    world["smb_request"] = request_data_use(
        client, world, "riley", world["smb_dataset"], SMB_FAMILY
    )
    return world
