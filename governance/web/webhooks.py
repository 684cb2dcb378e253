"""HTTP API of lifecycle webhooks: the delivery log, and redelivery of a failed delivery."""

from __future__ import annotations

from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from governance.db import INT_MAX, get_session
from governance.web.audit_lookup import permitted_domains
from governance.web.common import ERROR_RESPONSES, SECURITY
from governance.web.guard import current_actor
from governance.web.webhooks_lookup import delivery_for
from governance.webhooks import service
from governance.webhooks.models import DeliveryList, DeliveryRead

bp = APIBlueprint(
    "webhooks",
    __name__,
    url_prefix="/api/v1/webhooks",
    abp_tags=[Tag(name="webhooks", description="Lifecycle webhook deliveries")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str | None = Field(default=None, max_length=63)
    state: Literal["pending", "delivered", "failed"] | None = None
    subscriber: str | None = Field(default=None, max_length=63)
    limit: int = Field(default=100, ge=1, le=1000)
    before_id: int | None = Field(default=None, ge=1, le=INT_MAX)


class DeliveryPath(BaseModel):
    uid: str = Field(max_length=40, pattern=r"^msg_[0-9a-f]{32}$")


@bp.get("/deliveries", responses={200: DeliveryList})
def list_deliveries(query: DeliveryQuery):
    """Deliveries in the domains where the caller may read webhooks, newest first."""
    allowed = permitted_domains("read", "webhook")
    domains = sorted(allowed if query.domain is None else allowed & {query.domain})
    session = get_session()
    rows = service.list_deliveries(
        session,
        domains,
        state=query.state,
        subscriber=query.subscriber,
        limit=query.limit,
        before_id=query.before_id,
    )
    return DeliveryList(items=[service.delivery_read(session, d) for d in rows]).model_dump(
        mode="json"
    )


@bp.get("/deliveries/<uid>", responses={200: DeliveryRead})
def get_delivery(path: DeliveryPath):
    """One delivery with its log: every attempt, its status and how long it took."""
    delivery = delivery_for(path.uid, "read")
    return service.delivery_read(get_session(), delivery, with_log=True).model_dump(mode="json")


@bp.post("/deliveries/<uid>/redeliver", responses={200: DeliveryRead})
def redeliver(path: DeliveryPath):
    """Queue a failed (or delivered) delivery again: same id and body, fresh attempts."""
    session = get_session()
    delivery = delivery_for(path.uid, "redeliver")
    service.redeliver(session, delivery, current_actor())
    return service.delivery_read(session, delivery, with_log=True).model_dump(mode="json")
