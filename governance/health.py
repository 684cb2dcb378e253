"""The public health check."""

from __future__ import annotations

import sqlalchemy as sa
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from governance.db import get_session

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")])


class Health(BaseModel):
    status: str
    database: str


@bp.get("/api/v1/health", responses={200: Health, 503: Health})
def health():
    """Report whether the service and its database answer; needs no credentials."""
    try:
        get_session().exec(sa.select(1)).one()
    except sa.exc.SQLAlchemyError:
        return Health(status="unavailable", database="unreachable").model_dump(), 503
    return Health(status="ok", database="ok").model_dump()
