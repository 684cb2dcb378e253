# ruff: noqa: F811 (pytest fixtures imported from the model pipeline tests)
"""The public client against a live server: a steward uploads and scans, a reviewer decides,
an auditor reads the log; errors carry the service's message and status."""

from __future__ import annotations

import pytest

from governance.client import ApiError, Client
from tests.models.test_pipeline import (  # noqa: F401 (fixtures)
    app,
    live,
    scanner,
    tiny,
    world,
)


def test_a_reviewer_script_through_the_client(world, live):
    steward = Client(live, world["casey"])
    dataset = steward.call("POST", "/api/v1/domains/consumer-tax/datasets", {"name": "client"})
    version = steward.upload(
        dataset["id"], 2025, [{"text": f"Schedule C line {i}?"} for i in range(1, 6)]
    )
    receipt = steward.scan(dataset["id"], version["version"])
    assert receipt["verdict"] == "pass" and receipt["canary_recall"] >= 0.95
    assert steward.quarantine(dataset["id"], version["version"]) == []
    with pytest.raises(ApiError) as refused:
        Client(live, world["casey"]).call("GET", "/api/v1/domains/smb-accounting")
    assert refused.value.status == 403 and "may not" in refused.value.message
    auditor = Client(live, world["admin"])
    entries = auditor.audit_entries(principal="casey", action="upload")
    assert entries and all(e["principal"] == "casey" for e in entries)
