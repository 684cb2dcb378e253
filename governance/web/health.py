"""The public health check."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Literal

import sqlalchemy as sa
from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from governance.db import get_session

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")])

ChildState = Literal["ok", "starting", "unreachable", "in process"]


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="`degraded`: the database answers but the engine or the guardrails do not "
        "(queries to models fail until `govern serve` has restarted it)"
    )
    database: Literal["ok", "unreachable"]
    engine: ChildState = Field(description="The serving engine the gateway asks")
    guardrails: ChildState = Field(description="The guardrails that scan prompts and answers")


def child_state(url: str, default_port: int) -> ChildState:
    """What a loopback child (or a configured URL) answers on /health, within a second."""
    if url == "inprocess":
        return "in process"
    target = (url or f"http://127.0.0.1:{default_port}").rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(target, timeout=1) as answer:  # noqa: S310 (configured URL)
            return "ok" if answer.status == 200 else "starting"
    except urllib.error.HTTPError as exc:
        return "starting" if exc.code == 503 else "unreachable"
    except (urllib.error.URLError, OSError, ValueError):
        return "unreachable"


@bp.get("/api/v1/health", responses={200: Health, 503: Health})
def health():
    """Report whether the service, its database, its serving engine and its guard answer;
    needs no credentials. 503 only when the database does not answer."""
    config = current_app.config
    engine = child_state(config.get("SERVING_URL") or "", int(config["SERVING_PORT"]))
    guardrails = child_state(config.get("GUARDRAILS_URL") or "", int(config["GUARDRAILS_PORT"]))
    try:
        get_session().exec(sa.select(1)).one()
    except sa.exc.SQLAlchemyError:
        body = Health(
            status="unavailable", database="unreachable", engine=engine, guardrails=guardrails
        )
        return body.model_dump(), 503
    status = (
        "ok"
        if engine in ("ok", "in process") and guardrails in ("ok", "in process")
        else "degraded"
    )
    return Health(status=status, database="ok", engine=engine, guardrails=guardrails).model_dump()
