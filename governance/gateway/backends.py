"""Serving backends: how the gateway gets an answer from a model version.

`EngineBackend` (the default) asks a serving engine process over its OpenAI-compatible API:
the embedded `govern engine` or vLLM, one engine per base model if configured so.
`LocalBackend` answers in its own process (the job runner's evaluation gate, scripts); both
load models with `LocalModels`.

A backend answers a `Query` (a prompt, or chat messages, with the sampling parameters) for a
`Servable` (a version's verified adapter on its base), whole (`complete`) or as text deltas
(`stream`, which ends with the whole `Generation` for its token counts)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import urllib3

from governance.errors import GovernanceError
from governance.families.signing import (
    ADAPTER_WEIGHTS,
    BASE_MANIFEST,
    UntrustedAdapter,
    base_manifest,
    unpack_adapter,
)
from trainers.hashing import file_sha256


@dataclass(frozen=True)
class Servable:
    """What a backend needs to answer with one model version."""

    uid: str
    base_path: str
    adapter_key: str
    adapter_sha256: str
    # The base model's registered name: the engine that serves it (SERVING_ENGINES).
    base_name: str = ""
    # What a production version must carry to be served: its model-signing bundle over the
    # adapter and the base's manifest. None for a candidate under evaluation (not yet signed).
    signature: str | None = None
    base_manifest: bytes = b""


@dataclass(frozen=True)
class Query:
    """What to generate: a prompt (completions) or chat messages, and how."""

    prompt: str | None = None
    messages: tuple[Mapping[str, str], ...] | None = None
    max_tokens: int = 16
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def chat(self) -> bool:
        return self.messages is not None


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"


class ServingBackend(Protocol):
    def complete(self, servable: Servable, query: Query) -> Generation: ...

    def stream(self, servable: Servable, query: Query) -> Iterator[str | Generation]: ...

    def healthy(self, servable: Servable) -> bool: ...

    def generate(self, servable: Servable, prompt: str, max_new_tokens: int) -> Generation: ...


class BackendBase:
    """What every backend offers on top of `complete`."""

    def complete(self, servable: Servable, query: Query) -> Generation:
        raise NotImplementedError

    def generate(self, servable: Servable, prompt: str, max_new_tokens: int) -> Generation:
        """A greedy completion of a prompt (the evaluation gate's probe)."""
        return self.complete(servable, Query(prompt=prompt, max_tokens=max_new_tokens))

    def healthy(self, servable: Servable) -> bool:
        return True


# A kept-alive connection that the server closed while idle fails on reuse, before any answer
# (gunicorn and uvicorn close idle ones after seconds): one retry on a fresh connection. POST
# is retried too: asking an engine or the guardrails again is harmless.
ONE_RETRY = urllib3.Retry(
    total=1, connect=1, read=1, redirect=0, status=0, other=0, allowed_methods=None
)


class BackendError(GovernanceError):
    status = 503
    code = "backend_unavailable"


class StopText:
    """A growing answer cut at the first stop string to complete (not part of the answer).

    `feed` returns only text that cannot turn out to be the start of a stop string, so a
    stream never shows a caller what a stop string later takes back.
    """

    def __init__(self, stops: tuple[str, ...] = ()) -> None:
        self.stops = tuple(s for s in stops if s)
        self.text = ""
        self.sent = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.text += piece
        # Generation stops where a stop string is first complete: the earliest end wins
        # (then the earliest start), however the text was cut into pieces.
        found = [(i + len(s), i) for s in self.stops if (i := self.text.find(s)) >= 0]
        if found:
            self.text = self.text[: min(found)[1]]
            self.stopped = True
            return self._release(len(self.text))
        hold = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(self.text)), hold, -1):
                if self.text.endswith(stop[:size]):
                    hold = size
                    break
        return self._release(len(self.text) - hold)

    def finish(self) -> str:
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        out = self.text[self.sent : upto] if upto > self.sent else ""
        self.sent = max(self.sent, upto)
        return out


def render_chat(tokenizer, messages) -> str:
    """The prompt of a conversation: the tokenizer's chat template, or, for a base model
    without one (the tiny test models), one `role: content` line per message."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [dict(m) for m in messages], add_generation_prompt=True, tokenize=False
        )
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, "assistant:"])


def adapter_dir(store, cache_dir: Path, servable: Servable, signer=None) -> Path:
    """The version's adapter unpacked from the blob store into the cache, its weights checked
    against the SHA-256 recorded at training: an adapter that does not match is never served.
    A production version's adapter must also verify against its model-signing signature
    (with its base's manifest beside it), the first time this process serves it."""
    target = cache_dir / servable.uid
    adapter = target / "adapter"
    weights = adapter / ADAPTER_WEIGHTS
    with _unpack_lock(target):
        # Concurrent first queries of a version unpack it once; a reader never sees a
        # half-written file (the archive is unpacked beside the target, then renamed in).
        if not weights.is_file():
            cache_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{servable.uid}-", dir=cache_dir))
            try:
                unpacked = unpack_adapter(store, servable.adapter_key, staging)
                target.mkdir(parents=True, exist_ok=True)
                # If another process unpacked it first, theirs is as good.
                with contextlib.suppress(OSError):
                    os.rename(unpacked, adapter)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        if servable.signature is not None:
            if signer is None:
                raise UntrustedAdapter("this process has no model-signing key to verify adapters")
            manifest = adapter / BASE_MANIFEST
            if not manifest.is_file() or manifest.read_bytes() != servable.base_manifest:
                written = target / f".{BASE_MANIFEST}.{os.getpid()}"
                written.write_bytes(servable.base_manifest)
                os.replace(written, manifest)
            signer.verify_once(servable.uid, adapter, servable.signature)
    # Every use, outside the lock: concurrent queries of one version hash in parallel.
    if file_sha256(weights) != servable.adapter_sha256:
        raise UntrustedAdapter(f"the adapter of version {servable.uid} does not match its hash")
    return adapter


_UNPACK_LOCKS: dict[Path, threading.Lock] = {}
_UNPACK_GUARD = threading.Lock()


def _unpack_lock(target: Path) -> threading.Lock:
    with _UNPACK_GUARD:
        return _UNPACK_LOCKS.setdefault(target, threading.Lock())


class LocalModels:
    """Base models with LoRA adapters, loaded on first use and kept (the last few) in memory.

    torch, transformers and peft are imported only here, on first use: by the serving engine
    and the job runner, never by the web process.
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._loaded: OrderedDict[str, tuple] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, name: str, base_path: str, adapter_path: str):
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            from peft import PeftModel
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            tokenizer = AutoTokenizer.from_pretrained(base_path, local_files_only=True)
            base = AutoModelForCausalLM.from_pretrained(base_path, local_files_only=True)
            with warnings.catch_warnings():
                # peft 0.21 still asks transformers 5 for a deprecated attribute.
                warnings.filterwarnings(
                    "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
                )
                model = PeftModel.from_pretrained(base, adapter_path)
            model.eval()
            self._loaded[name] = (tokenizer, model)
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
            return tokenizer, model

    def _ids(self, tokenizer, query: Query) -> list[int]:
        if query.chat:
            text = render_chat(tokenizer, query.messages)
            ids = tokenizer.encode(text, add_special_tokens=False)
            if not text.startswith(str(tokenizer.bos_token or "\0")):
                ids = [tokenizer.bos_token_id, *ids]
            return ids
        return [
            tokenizer.bos_token_id,
            *tokenizer.encode(query.prompt or "", add_special_tokens=False),
        ]

    def _generate_kwargs(self, tokenizer, ids: list[int], query: Query, stopped: threading.Event):
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class StopWhenTold(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return stopped.is_set()

        inputs = torch.tensor([ids])
        sampling = query.temperature > 0
        if query.seed is not None:
            torch.manual_seed(query.seed)
        return {
            "input_ids": inputs,
            "attention_mask": torch.ones_like(inputs),
            "max_new_tokens": query.max_tokens,
            "do_sample": sampling,
            "temperature": query.temperature if sampling else None,
            "top_p": None,
            "top_k": None,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "stopping_criteria": StoppingCriteriaList([StopWhenTold()]),
        }

    def complete(self, name: str, base_path: str, adapter_path: str, query: Query) -> Generation:
        answer: Generation | None = None
        for item in self.stream(name, base_path, adapter_path, query):
            if isinstance(item, Generation):
                answer = item
        assert answer is not None
        return answer

    def stream(
        self, name: str, base_path: str, adapter_path: str, query: Query
    ) -> Iterator[str | Generation]:
        """Text as the model writes it, cut at a stop string; then the whole Generation."""
        import torch
        from transformers import TextIteratorStreamer

        tokenizer, model = self.load(name, base_path, adapter_path)
        ids = self._ids(tokenizer, query)
        stopped = threading.Event()
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = self._generate_kwargs(tokenizer, ids, query, stopped)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.no_grad():
                    result["output"] = model.generate(**kwargs, streamer=streamer)
            except Exception as exc:  # handed to the reader below
                result["error"] = exc
                streamer.end()

        worker = threading.Thread(target=run, name="generate", daemon=True)
        worker.start()
        text = StopText(query.stop)
        try:
            for piece in streamer:
                delta = text.feed(piece)
                if delta:
                    yield delta
                if text.stopped:
                    stopped.set()
            rest = text.finish()
            if rest:
                yield rest
        finally:
            stopped.set()
            worker.join()
        if "error" in result:
            raise result["error"]
        produced = result["output"][0, len(ids) :].tolist()
        if text.stopped:
            reason = "stop"
        elif len(produced) >= query.max_tokens and tokenizer.eos_token_id not in produced:
            reason = "length"
        else:
            reason = "stop"
        yield Generation(text.text, len(ids), len(produced), reason)


class LocalBackend(BackendBase):
    """Serve in this process (the job runner's evaluation gate, scripts): adapters from the
    blob store, models from LocalModels."""

    def __init__(self, store, cache_dir: str | Path, keep: int = 2, signer=None) -> None:
        self.store = store
        self.cache_dir = Path(cache_dir)
        self.models = LocalModels(keep)
        self.signer = signer

    def complete(self, servable: Servable, query: Query) -> Generation:
        adapter = adapter_dir(self.store, self.cache_dir, servable, self.signer)
        return self.models.complete(servable.uid, servable.base_path, str(adapter), query)

    def stream(self, servable: Servable, query: Query) -> Iterator[str | Generation]:
        adapter = adapter_dir(self.store, self.cache_dir, servable, self.signer)
        return self.models.stream(servable.uid, servable.base_path, str(adapter), query)


@dataclass
class Engine:
    """One engine process, and what the gateway knows of it."""

    url: str
    registered: set[str] = field(default_factory=set)
    down_until: float = 0.0


class EngineBackend(BackendBase):
    """Serve through engine processes over their OpenAI-compatible API: the embedded
    `govern engine`, or vLLM started with `--enable-lora` (and
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True). `engines` maps a base model's name to the engine
    that serves it (SERVING_ENGINES); any other base goes to `url`.

    The gateway unpacks and verifies the version's adapter, hands the engine its path under
    the version's uid (`POST /v1/load_lora_adapter`, as vLLM names it), then asks for a
    completion with that name as the model. An engine that restarted and forgot an adapter
    answers 404 for it; the adapter is then loaded again, once. An engine that does not answer
    is counted unhealthy for `cooldown` seconds, so routing can send its traffic elsewhere.
    Connections are kept alive and shared by the threads of the process.
    """

    def __init__(
        self,
        url: str,
        store,
        cache_dir: str | Path,
        api_key: str = "",
        timeout: float = 120.0,
        engines: Mapping[str, str] | None = None,
        cooldown: float = 30.0,
        signer=None,
    ) -> None:
        self.url = url.rstrip("/")
        self.signer = signer
        self.store = store
        self.cache_dir = Path(cache_dir)
        self.api_key = api_key
        self.timeout = timeout
        self.cooldown = cooldown
        self._engines = {self.url: Engine(self.url)}
        self._by_base: dict[str, Engine] = {}
        for base, engine_url in (engines or {}).items():
            key = engine_url.rstrip("/")
            self._by_base[base] = self._engines.setdefault(key, Engine(key))
        self._lock = threading.Lock()
        self._http = urllib3.PoolManager(
            maxsize=64,
            block=False,
            retries=ONE_RETRY,
            timeout=urllib3.Timeout(connect=5, read=timeout),
        )

    def close(self) -> None:
        """Close the connections kept to the engines."""
        self._http.clear()

    def engine_for(self, servable: Servable) -> Engine:
        return self._by_base.get(servable.base_name) or self._engines[self.url]

    def healthy(self, servable: Servable) -> bool:
        return time.monotonic() >= self.engine_for(servable).down_until

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _request(self, engine: Engine, path: str, body: dict, stream: bool = False):
        try:
            response = self._http.request(
                "POST",
                engine.url + path,
                body=json.dumps(body).encode(),
                headers=self._headers(),
                preload_content=not stream,
            )
        except urllib3.exceptions.HTTPError as exc:
            engine.down_until = time.monotonic() + self.cooldown
            reason = getattr(exc, "reason", None) or exc
            raise BackendError(
                f"the serving engine at {engine.url} did not answer: {reason}; "
                "it may still be starting",
                details={"engine": engine.url},
            ) from None
        engine.down_until = 0.0
        return response

    def _post(self, engine: Engine, path: str, body: dict) -> tuple[int, dict]:
        response = self._request(engine, path, body)
        raw = response.data
        try:
            parsed = json.loads(raw) if raw.strip().startswith(b"{") else {}
        except ValueError:
            parsed = {"error": {"message": raw.decode(errors="replace")[:300]}}
        return response.status, parsed

    def _register(self, engine: Engine, servable: Servable) -> None:
        adapter = adapter_dir(self.store, self.cache_dir, servable, self.signer)
        status, body = self._post(
            engine,
            "/v1/load_lora_adapter",
            {
                "lora_name": servable.uid,
                "lora_path": str(adapter),
                "base_model_path": servable.base_path,
            },
        )
        message = json.dumps(body)
        if status >= 400 and "already" not in message:
            raise BackendError(
                f"the serving engine refused adapter {servable.uid}: HTTP {status} {message[:200]}"
            )
        with self._lock:
            engine.registered.add(servable.uid)

    @staticmethod
    def _body(servable: Servable, query: Query, stream: bool) -> tuple[str, dict]:
        body: dict[str, Any] = {
            "model": servable.uid,
            "max_tokens": query.max_tokens,
            "temperature": query.temperature,
        }
        if query.stop:
            body["stop"] = list(query.stop)
        if query.seed is not None:
            body["seed"] = query.seed
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if query.chat:
            body["messages"] = [dict(m) for m in query.messages or ()]
            return "/v1/chat/completions", body
        body["prompt"] = query.prompt or ""
        return "/v1/completions", body

    def _open(self, servable: Servable, query: Query, stream: bool):
        engine = self.engine_for(servable)
        if servable.uid not in engine.registered:
            self._register(engine, servable)
        path, body = self._body(servable, query, stream)
        response = self._request(engine, path, body, stream)
        if response.status == 404:  # The engine restarted without the adapter: load it again.
            response.drain_conn()
            engine.registered.discard(servable.uid)
            self._register(engine, servable)
            response = self._request(engine, path, body, stream)
        if response.status != 200:
            raw = response.read() if stream else response.data
            if stream:
                response.release_conn()
            raise BackendError(
                f"the serving engine answered HTTP {response.status}: "
                f"{raw.decode(errors='replace')[:200]}"
            )
        return response

    def complete(self, servable: Servable, query: Query) -> Generation:
        answer = json.loads(self._open(servable, query, stream=False).data)
        choice = answer["choices"][0]
        text = choice["message"]["content"] if query.chat else choice["text"]
        usage = answer.get("usage") or {}
        return Generation(
            text or "",
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            choice.get("finish_reason") or "stop",
        )

    def stream(self, servable: Servable, query: Query) -> Iterator[str | Generation]:
        response = self._open(servable, query, stream=True)
        parts: list[str] = []
        usage: dict = {}
        reason = "stop"
        try:
            for raw in response:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                chunk = json.loads(data)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or ():
                    piece = (
                        (choice.get("delta") or {}).get("content")
                        if query.chat
                        else choice.get("text")
                    )
                    if piece:
                        parts.append(piece)
                        yield piece
                    reason = choice.get("finish_reason") or reason
        except urllib3.exceptions.HTTPError as exc:
            raise BackendError(f"the serving engine broke off its answer: {exc}") from None
        finally:
            response.release_conn()
        yield Generation(
            "".join(parts),
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            reason,
        )


def servable(version, base, signed: bool = False) -> Servable:
    """What serves a version; `signed`: it must verify against its signature (production)."""
    manifest = version.adapter_manifest or {}
    return Servable(
        uid=version.uid,
        base_path=base.path,
        adapter_key=version.adapter_key,
        adapter_sha256=manifest.get(f"adapter/{ADAPTER_WEIGHTS}", ""),
        base_name=base.name,
        signature=(version.adapter_signature or "") if signed else None,
        base_manifest=base_manifest(base) if signed else b"",
    )
