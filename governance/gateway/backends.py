"""Serving backends. `local` loads base model + adapter in this process, lazily, and caches
them; a remote model server can implement the same `ServingBackend` protocol later."""

from __future__ import annotations

import io
import tarfile
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from governance.errors import GovernanceError


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


class LocalBackend:
    """Base model + LoRA adapter loaded on first query and kept (the last few) in memory.

    torch and transformers are imported only here, on first use, so the web process starts
    without them.
    """

    def __init__(self, store, cache_dir: str | Path, keep: int = 2) -> None:
        self.store = store
        self.cache_dir = Path(cache_dir)
        self.keep = keep
        self._loaded: OrderedDict[str, tuple] = OrderedDict()
        self._lock = threading.Lock()

    def _adapter_dir(self, servable: Servable) -> Path:
        from trainers.hashing import file_sha256

        target = self.cache_dir / servable.uid
        weights = target / "adapter" / "adapter_model.safetensors"
        if not weights.is_file():
            target.mkdir(parents=True, exist_ok=True)
            with self.store.open(servable.adapter_key) as handle:
                payload = handle.read()
            with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as tar:
                tar.extractall(target, filter="data")
        if file_sha256(weights) != servable.adapter_sha256:
            raise BackendError(f"the adapter of version {servable.uid} does not match its hash")
        return target / "adapter"

    def load(self, servable: Servable):
        with self._lock:
            if servable.uid in self._loaded:
                self._loaded.move_to_end(servable.uid)
                return self._loaded[servable.uid]
            from peft import PeftModel
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            tokenizer = AutoTokenizer.from_pretrained(servable.base_path, local_files_only=True)
            base = AutoModelForCausalLM.from_pretrained(servable.base_path, local_files_only=True)
            with warnings.catch_warnings():
                # peft 0.21 still asks transformers 5 for a deprecated attribute.
                warnings.filterwarnings(
                    "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
                )
                model = PeftModel.from_pretrained(base, str(self._adapter_dir(servable)))
            model.eval()
            self._loaded[servable.uid] = (tokenizer, model)
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
            return tokenizer, model

    def generate(self, servable: Servable, prompt: str, max_new_tokens: int) -> Generation:
        import torch

        tokenizer, model = self.load(servable)
        ids = [tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]
        inputs = torch.tensor([ids])
        with torch.no_grad():
            output = model.generate(
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new = output[0, len(ids) :].tolist()
        text = tokenizer.decode(new, skip_special_tokens=True)
        return Generation(text, len(ids), len(new))


def servable(version, base) -> Servable:
    manifest = version.adapter_manifest or {}
    return Servable(
        uid=version.uid,
        base_path=base.path,
        adapter_key=version.adapter_key,
        adapter_sha256=manifest.get("adapter/adapter_model.safetensors", ""),
    )
