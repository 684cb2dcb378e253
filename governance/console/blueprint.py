"""The console's blueprint and the constants its pages share."""

from __future__ import annotations

import re

from flask import Blueprint

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)

SESSION_COOKIE = "governance_console"
SIGN_IN_COOKIE = "governance_console_sign_in"
# Pages anyone may load; everything else needs a session.
PUBLIC_ENDPOINTS = frozenset({"console.sign_in", "console.static"})
# Pages that need a session but decide nothing about data (they show only the caller's own).
SESSION_ONLY_ENDPOINTS = frozenset({"console.sign_out"})
REQUEST_STATES = ("pending", "approved", "rejected", "expired", "superseded", "invalidated")
UID = re.compile(r"^[0-9a-f]{32}$")
NOTICES = {
    "signed-out": "You have signed out.",
    "decided": "Your decision was recorded, signed and written to the audit log.",
    "redelivered": "The delivery was queued again; the job runner sends it within seconds.",
    "reviewed": "Your scores were recorded, signed and written to the audit log.",
    "labelled": "Your label was recorded and written to the audit log; the estimate below "
    "includes it.",
}
ENDED = {
    "idle": "Your session ended after a period without activity. Sign in again.",
    "expired": "Your session reached its time limit. Sign in again.",
    "token-invalid": "The token this session was opened with is no longer valid.",
    "signed-out": "This session was signed out.",
    "principal-changed": "Single sign-on now names someone else; sign in again.",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
