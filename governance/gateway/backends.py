"""Serving backends: how the gateway gets an answer from a model version.

`EngineBackend` (the default) asks a serving engine process over its OpenAI-compatible API:
the embedded `govern engine` or vLLM. `LocalBackend` answers in its own process (the job
runner's evaluation gate, scripts); both load models with `LocalModels`."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import urllib.error
import urllib.request
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from governance.errors import GovernanceError
from trainers.hashing import file_sha256


@dataclass(frozen=True)
class Servable:
    """What a backend needs to answer with one model version."""

    uid: str
    base_path: str
    adapter_key: str
    adapter_sha256: str


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int


class ServingBackend(Protocol):
    def generate(self, servable: Servable, prompt: str, max_new_tokens: int) -> Generation: ...


class BackendError(GovernanceError):
    status = 503
    code = "backend_unavailable"


def adapter_dir(store, cache_dir: Path, servable: Servable) -> Path:
    """The version's adapter unpacked from the blob store into the cache, its weights checked
    against the SHA-256 recorded at training: an adapter that does not match is never served."""
    target = cache_dir / servable.uid
    weights = target / "adapter" / "adapter_model.safetensors"
    if not weights.is_file():
        target.mkdir(parents=True, exist_ok=True)
        with store.open(servable.adapter_key) as handle:
            payload = handle.read()
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as tar:
            tar.extractall(target, filter="data")
    if file_sha256(weights) != servable.adapter_sha256:
        raise BackendError(f"the adapter of version {servable.uid} does not match its hash")
    return target / "adapter"


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

    def generate(
        self,
        name: str,
        base_path: str,
        adapter_path: str,
        prompt: str,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Generation:
        import torch

        tokenizer, model = self.load(name, base_path, adapter_path)
        ids = [tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]
        inputs = torch.tensor([ids])
        sampling = temperature > 0
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            output = model.generate(
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=max_new_tokens,
                do_sample=sampling,
                temperature=temperature if sampling else None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new = output[0, len(ids) :].tolist()
        text = tokenizer.decode(new, skip_special_tokens=True)
        return Generation(text, len(ids), len(new))


class LocalBackend:
    """Serve in this process (the job runner's evaluation gate, scripts): adapters from the
    blob store, models from LocalModels."""

    def __init__(self, store, cache_dir: str | Path, keep: int = 2) -> None:
        self.store = store
        self.cache_dir = Path(cache_dir)
        self.models = LocalModels(keep)

    def generate(self, servable: Servable, prompt: str, max_new_tokens: int) -> Generation:
        adapter = adapter_dir(self.store, self.cache_dir, servable)
        return self.models.generate(
            servable.uid, servable.base_path, str(adapter), prompt, max_new_tokens
        )


class EngineBackend:
    """Serve through an engine process over its OpenAI-compatible API: the embedded
    `govern engine`, or vLLM started with `--enable-lora` (and
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True).

    The gateway unpacks and verifies the version's adapter, hands the engine its path under
    the version's uid (`POST /v1/load_lora_adapter`, as vLLM names it), then asks for a
    completion with that name as the model. An engine that restarted and forgot an adapter
    answers 404 for it; the adapter is then loaded again, once.
    """

    def __init__(
        self, url: str, store, cache_dir: str | Path, api_key: str = "", timeout: float = 120.0
    ) -> None:
        self.url = url.rstrip("/")
        self.store = store
        self.cache_dir = Path(cache_dir)
        self.api_key = api_key
        self.timeout = timeout
        self._registered: set[str] = set()
        self._lock = threading.Lock()

    def _post(self, path: str, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(  # noqa: S310 (the configured engine)
            self.url + path, data=json.dumps(body).encode(), method="POST"
        )
        request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read()
                return response.status, json.loads(raw) if raw.strip().startswith(b"{") else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, {"error": {"message": raw.decode(errors="replace")[:300]}}
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            raise BackendError(
                f"the serving engine at {self.url} did not answer: "
                f"{getattr(exc, 'reason', exc)}; it may still be starting",
                details={"engine": self.url},
            ) from None

    def _register(self, servable: Servable) -> None:
        adapter = adapter_dir(self.store, self.cache_dir, servable)
        status, body = self._post(
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
            self._registered.add(servable.uid)

    def generate(self, servable: Servable, prompt: str, max_new_tokens: int) -> Generation:
        if servable.uid not in self._registered:
            self._register(servable)
        body = {
            "model": servable.uid,
            "prompt": prompt,
            "max_tokens": max_new_tokens,
            "temperature": 0,
        }
        status, answer = self._post("/v1/completions", body)
        if status == 404:  # The engine restarted without the adapter: load it again, once.
            self._registered.discard(servable.uid)
            self._register(servable)
            status, answer = self._post("/v1/completions", body)
        if status != 200:
            raise BackendError(
                f"the serving engine answered HTTP {status}: {json.dumps(answer)[:200]}"
            )
        usage = answer.get("usage") or {}
        return Generation(
            answer["choices"][0]["text"],
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
        )


def servable(version, base) -> Servable:
    manifest = version.adapter_manifest or {}
    return Servable(
        uid=version.uid,
        base_path=base.path,
        adapter_key=version.adapter_key,
        adapter_sha256=manifest.get("adapter/adapter_model.safetensors", ""),
    )
