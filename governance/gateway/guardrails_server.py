"""The guardrails process (`govern guardrails`): PII scans of prompts and answers at query time.

    GET  /health    200 once the scanner has loaded (503 while spaCy and Presidio load)
    POST /analyze   Presidio's analyzer REST API: {"text", "language"} answers a list of
                    {"entity_type", "start", "end", "score"}; with "domain" the domain's
                    pii.yaml rules apply (thresholds, allow patterns); with "texts" (a list)
                    it answers {"results": [[...], ...]}, one list per text.

It keeps nothing it is sent and logs no text. `govern serve` starts one beside the web workers
on loopback, sharing their random key; the web process never loads Presidio itself.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request

from governance.gateway.guardrails import LocalGuardrails
from governance.gateway.serving_engine import require_key

MAX_TEXTS = 256
MAX_CHARS = 200_000


def create_guardrails_app(
    policy_dir: str | Path, api_key: str = "", model: str = "", scanner=None
) -> Flask:
    app = Flask("governance-guard")
    state: dict[str, Any] = {}
    ready = threading.Event()

    def load() -> None:
        if scanner is None:
            from governance.pii.scanner import Scanner

            state["guard"] = LocalGuardrails(Scanner(model) if model else Scanner(), policy_dir)
        else:
            state["guard"] = LocalGuardrails(scanner, policy_dir)
        ready.set()

    threading.Thread(target=load, name="guard-load", daemon=True).start()

    def error(status: int, message: str):
        return jsonify({"error": message}), status

    require_key(app, api_key, lambda: error(401, "invalid API key"))

    @app.get("/health")
    def health():
        return ("", 200) if ready.is_set() else ("", 503)

    @app.post("/analyze")
    def analyze():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return error(400, "the body must be a JSON object")
        single = "texts" not in body
        texts = [body.get("text")] if single else body.get("texts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return error(400, "text must be a string (texts a list of strings)")
        if len(texts) > MAX_TEXTS or sum(len(t) for t in texts) > MAX_CHARS:
            return error(413, f"at most {MAX_TEXTS} texts and {MAX_CHARS} characters a call")
        language = body.get("language", "en")
        if language != "en":
            return error(400, "only language 'en' is supported")
        domain = body.get("domain")
        if domain is not None and not isinstance(domain, str):
            return error(400, "domain must be a string")
        if not ready.wait(timeout=600):
            return error(503, "the scanner is still loading")
        found = state["guard"].analyze(texts, domain)
        results = [
            [
                {
                    "entity_type": s.entity_type,
                    "start": s.start,
                    "end": s.end,
                    "score": round(s.score, 4),
                }
                for s in spans
            ]
            for spans in found
        ]
        return jsonify(results[0]) if single else jsonify({"results": results})

    return app
