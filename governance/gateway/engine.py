"""The embedded serving engine: base models with LoRA adapters behind the subset of the
OpenAI-compatible API that vLLM serves with `--enable-lora`.

    GET  /health                 200 once torch is loaded (503 while it loads)
    GET  /v1/models              the adapters loaded
    POST /v1/load_lora_adapter   {"lora_name", "lora_path", "base_model_path"}
    POST /v1/unload_lora_adapter {"lora_name"}
    POST /v1/completions         {"model", "prompt", "max_tokens", "temperature", "seed"}

`govern serve` starts one beside the web workers, on loopback, with a random API key both
share; production points SERVING_URL at vLLM instead (one engine per base model). The
engine trusts its caller (the gateway) for authorization and audit; it only checks the key.
It is the only process of the embedded default that imports torch to answer queries.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from flask import Flask, jsonify, request

from governance.gateway.backends import LocalModels

MAX_TOKENS = 2048


def create_engine_app(api_key: str = "", keep: int = 2, preload: bool = True) -> Flask:
    app = Flask("governance-engine")
    models = LocalModels(keep)
    adapters: dict[str, tuple[str, str]] = {}
    ready = threading.Event()

    def warm() -> None:
        # Importing torch and transformers takes seconds: do it before the first query.
        import torch  # noqa: F401
        import transformers  # noqa: F401

        ready.set()

    if preload:
        threading.Thread(target=warm, name="engine-warm", daemon=True).start()
    else:
        ready.set()

    def error(status: int, message: str, kind: str = "invalid_request_error"):
        return jsonify({"error": {"message": message, "type": kind, "code": status}}), status

    @app.before_request
    def _authenticate():
        if request.path == "/health" or not api_key:
            return None
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            return error(401, "invalid API key", "authentication_error")
        return None

    @app.get("/health")
    def health():
        return ("", 200) if ready.is_set() else ("", 503)

    @app.get("/v1/models")
    def list_models():
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "owned_by": "governance"} for name in adapters
            ],
        }

    @app.post("/v1/load_lora_adapter")
    def load_adapter():
        body = request.get_json(silent=True) or {}
        name, path, base = (
            body.get("lora_name"),
            body.get("lora_path"),
            body.get("base_model_path"),
        )
        if not (isinstance(name, str) and isinstance(path, str) and isinstance(base, str)):
            return error(400, "lora_name, lora_path and base_model_path are required")
        if not (name and path and base):
            return error(400, "lora_name, lora_path and base_model_path must not be empty")
        if name in adapters and adapters[name] != (base, path):
            return error(400, f"the adapter {name} is already loaded from another path")
        adapters[name] = (base, path)
        return f"Success: LoRA adapter '{name}' added successfully.", 200

    @app.post("/v1/unload_lora_adapter")
    def unload_adapter():
        body = request.get_json(silent=True) or {}
        if adapters.pop(str(body.get("lora_name")), None) is None:
            return error(404, f"no adapter {body.get('lora_name')!r}", "not_found_error")
        return f"Success: LoRA adapter '{body['lora_name']}' removed successfully.", 200

    @app.post("/v1/completions")
    def completions():
        body: dict[str, Any] = request.get_json(silent=True) or {}
        name = body.get("model")
        if name not in adapters:
            return error(404, f"The model `{name}` does not exist.", "not_found_error")
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            # An empty prompt is allowed (the model starts from its beginning-of-text token).
            return error(400, "prompt must be a string")
        max_tokens = body.get("max_tokens", 16)
        temperature = body.get("temperature", 1.0)
        seed = body.get("seed")
        if not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS:
            return error(400, f"max_tokens must be an integer from 1 to {MAX_TOKENS}")
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            return error(400, "temperature must be from 0 to 2")
        if seed is not None and not isinstance(seed, int):
            return error(400, "seed must be an integer")
        ready.wait()
        base, path = adapters[name]
        answer = models.generate(name, base, path, prompt, max_tokens, float(temperature), seed)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "text": answer.text,
                    "logprobs": None,
                    "finish_reason": "length" if answer.completion_tokens >= max_tokens else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "total_tokens": answer.prompt_tokens + answer.completion_tokens,
            },
        }

    return app


def free_port() -> int:
    """A loopback port nothing listens on now (for a process started next)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def engine_process(port: int | None = None, api_key: str | None = None, timeout: float = 600.0):
    """Start `govern engine` on loopback (a free port unless given) and wait until it is
    ready; yield (url, api key). Used by `govern demo`, the tests and the benchmarks."""
    if port is None:
        port = free_port()
    key = api_key if api_key is not None else secrets.token_urlsafe(24)
    process = subprocess.Popen(
        [sys.executable, "-m", "governance.cli", "engine", "--port", str(port)],
        env={**os.environ, "SERVING_API_KEY": key},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as answer:  # noqa: S310
                    if answer.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the serving engine did not start: {stderr_tail(process)}")
            time.sleep(0.2)
        yield url, key
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def stderr_tail(process: subprocess.Popen) -> str:
    return (process.stderr.read() if process.stderr else "")[-500:]
