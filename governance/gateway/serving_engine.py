"""The embedded serving engine: base models with LoRA adapters behind the subset of the
OpenAI-compatible API that vLLM serves with `--enable-lora`.

    GET  /health                 200 once torch is loaded (503 while it loads)
    GET  /v1/models              the adapters loaded
    POST /v1/load_lora_adapter   {"lora_name", "lora_path", "base_model_path"}
    POST /v1/unload_lora_adapter {"lora_name"}
    POST /v1/completions         {"model", "prompt", "max_tokens", "temperature", "stop",
                                  "seed", "stream", "stream_options"}
    POST /v1/chat/completions    the same with "messages" instead of "prompt"

`govern serve` starts one beside the web workers, on loopback, with a random API key both
share; production points SERVING_URL at vLLM instead (one engine per base model). The
engine trusts its caller (the gateway) for authorization and audit; it only checks the key.
It is the only process of the embedded default that imports torch to answer queries.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, jsonify, request

from governance.gateway.backends import Generation, LocalModels, Query, StopText

MAX_TOKENS = 2048


class EchoModels:
    """An engine without models (`govern engine --echo`): each answer repeats the prompt (for
    a chat, its last message) word by word, up to max_tokens words, at once. For load tests
    of the gateway (an upstream that costs nothing) and for seeing what reached the engine;
    it loads no torch and keeps nothing."""

    def complete(self, name: str, base_path: str, adapter_path: str, query: Query) -> Generation:
        *_pieces, last = self.stream(name, base_path, adapter_path, query)
        assert isinstance(last, Generation)
        return last

    def stream(self, name: str, base_path: str, adapter_path: str, query: Query):
        prompt = query.messages[-1]["content"] if query.messages else query.prompt or ""
        words = prompt.split()
        answer = StopText(query.stop)
        used = 0
        for index, word in enumerate(words[: query.max_tokens]):
            used += 1
            piece = answer.feed(word if index == 0 else " " + word)
            if piece:
                yield piece
            if answer.stopped:
                break
        rest = answer.finish()
        if rest:
            yield rest
        reason = "length" if used >= query.max_tokens and not answer.stopped else "stop"
        prompt_words = sum(len(m["content"].split()) for m in query.messages or ()) or len(words)
        yield Generation(answer.text, prompt_words, used, reason)


def create_engine_app(
    api_key: str = "", keep: int = 2, preload: bool = True, echo: bool = False
) -> Flask:
    app = Flask("governance-engine")
    models: LocalModels | EchoModels = EchoModels() if echo else LocalModels(keep)
    adapters: dict[str, tuple[str, str]] = {}
    ready = threading.Event()
    preload = preload and not echo

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

    require_key(app, api_key, lambda: error(401, "invalid API key", "authentication_error"))

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

    def query_of(body: dict[str, Any], chat: bool) -> Query | tuple:
        """The Query of a request body, or the error response to answer instead."""
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens", 16))
        temperature = body.get("temperature", 1.0)
        seed = body.get("seed")
        stop = body.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        if not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS:
            return error(400, f"max_tokens must be an integer from 1 to {MAX_TOKENS}")
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            return error(400, "temperature must be from 0 to 2")
        if seed is not None and not isinstance(seed, int):
            return error(400, "seed must be an integer")
        if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
            return error(400, "stop must be a string or a list of strings")
        common: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": float(temperature),
            "stop": tuple(stop),
            "seed": seed,
        }
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return error(400, "messages must be a non-empty list")
            for item in messages:
                if not (
                    isinstance(item, dict)
                    and isinstance(item.get("role"), str)
                    and isinstance(item.get("content"), str)
                ):
                    return error(400, "each message needs a role and a text content")
            return Query(
                messages=tuple({"role": m["role"], "content": m["content"]} for m in messages),
                **common,
            )
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            # An empty prompt is allowed (the model starts from its beginning-of-text token).
            return error(400, "prompt must be a string")
        return Query(prompt=prompt, **common)

    def answer(chat: bool):
        body: dict[str, Any] = request.get_json(silent=True) or {}
        name = body.get("model")
        if name not in adapters:
            return error(404, f"The model `{name}` does not exist.", "not_found_error")
        query = query_of(body, chat)
        if not isinstance(query, Query):
            return query
        ready.wait()
        base, path = adapters[name]
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.get("stream"):
            usage_too = bool((body.get("stream_options") or {}).get("include_usage"))
            pieces = models.stream(name, base, path, query)
            return Response(
                stream_chunks(ident, created, name, chat, pieces, usage_too),
                mimetype="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        result = models.complete(name, base, path, query)
        return completion_body(ident, created, name, chat, result)

    @app.post("/v1/completions")
    def completions():
        return answer(chat=False)

    @app.post("/v1/chat/completions")
    def chat_completions():
        return answer(chat=True)

    return app


def require_key(app: Flask, api_key: str, refusal) -> None:
    """Refuse every request but /health without `Authorization: Bearer <api_key>` (none
    when the key is empty: such a process listens on loopback only)."""

    @app.before_request
    def _authenticate():
        if request.path == "/health" or not api_key:
            return None
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            return refusal()
        return None


def completion_body(
    ident: str, created: int, model: str, chat: bool, result: Generation, fingerprint=None
) -> dict[str, Any]:
    """A whole answer in OpenAI's shape: `chat.completion` or `text_completion`."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": result.finish_reason}
    if chat:
        choice["message"] = {"role": "assistant", "content": result.text}
    else:
        choice.update(text=result.text, logprobs=None)
    body = {
        "id": ident,
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": model,
    }
    if fingerprint:
        body["system_fingerprint"] = fingerprint
    return body | {"choices": [choice], "usage": usage_of(result)}


def usage_of(result: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def sse(payload: dict[str, Any] | str) -> str:
    """One server-sent event of an OpenAI-style stream."""
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


def stream_chunks(
    ident: str,
    created: int,
    model: str,
    chat: bool,
    pieces: Iterator[str | Generation],
    usage_too: bool,
    fingerprint: str | None = None,
) -> Iterator[str]:
    """The chunks of an OpenAI-style stream (`chat.completion.chunk` or `text_completion`):
    one per piece of text, a last one with the finish reason, a usage chunk when asked, and
    `[DONE]`."""
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(choices: list[dict], **extra) -> str:
        head = {"id": ident, "object": kind, "created": created, "model": model}
        if fingerprint:
            head["system_fingerprint"] = fingerprint
        return sse(head | {"choices": choices} | extra)

    if chat:
        yield chunk(
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        )
    result: Generation | None = None
    for piece in pieces:
        if isinstance(piece, Generation):
            result = piece
            continue
        if chat:
            yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        else:
            yield chunk([{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}])
    reason = result.finish_reason if result else "stop"
    if chat:
        yield chunk([{"index": 0, "delta": {}, "finish_reason": reason}])
    else:
        yield chunk([{"index": 0, "text": "", "logprobs": None, "finish_reason": reason}])
    if usage_too and result is not None:
        yield chunk([], usage=usage_of(result))
    yield sse("[DONE]")


def free_port() -> int:
    """A loopback port nothing listens on now (for a process started next)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def engine_process(
    port: int | None = None, api_key: str | None = None, timeout: float = 600.0, echo=False
):
    """Start `govern engine` (with --echo: no models) on loopback (a free port unless given)
    and wait until it is ready; yield (url, api key). Used by `govern demo`, the tests and
    the benchmarks."""
    extra = ("--echo",) if echo else ()
    with loopback_process("engine", "SERVING_API_KEY", port, api_key, timeout, extra) as started:
        yield started


@contextlib.contextmanager
def loopback_process(
    command: str,
    key_variable: str,
    port: int | None = None,
    api_key: str | None = None,
    timeout: float = 600.0,
    arguments: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
):
    """Start `govern COMMAND --port PORT` (the engine, the guardrails) with a random key in
    `key_variable`, wait until its /health answers 200, and yield (url, api key)."""
    if port is None:
        port = free_port()
    key = api_key if api_key is not None else secrets.token_urlsafe(24)
    # Its stderr goes to a file, never to a pipe nobody reads while it runs: a process whose
    # logs filled a pipe's buffer would stop in the middle of a request.
    with tempfile.TemporaryFile(mode="a+") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "governance.cli", command, "--port", str(port), *arguments],
            env={**os.environ, **(env or {}), key_variable: key},
            stdout=subprocess.DEVNULL,
            stderr=errors,
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
                    raise RuntimeError(f"govern {command} did not start: {stderr_tail(errors)}")
                time.sleep(0.2)
            yield url, key
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def stderr_tail(errors) -> str:
    """The last of what a process wrote to its stderr file (opened to append: reading
    from the start moves no writer)."""
    errors.seek(0)
    return errors.read()[-500:]
