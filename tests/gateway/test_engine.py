"""The serving engine (`govern engine`, a real process) through the official OpenAI SDK, and
the gateway's backend against it: adapters by name, completions with usage, errors."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import openai
import pytest

from benchmarks.served import tiny_adapter
from governance.families.signing import UntrustedAdapter
from governance.gateway.backends import BackendError, EngineBackend, Servable
from governance.storage import LocalBlobStore


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny base model and an (untrained) LoRA adapter for it, built here."""
    root = tmp_path_factory.mktemp("engine")
    tiny_adapter(root / "base", root / "adapter")
    return root / "base", root / "adapter"


def load(engine, name: str, base: Path, path: Path) -> int:
    url, key = engine
    request = urllib.request.Request(
        url + "/v1/load_lora_adapter",
        data=(
            f'{{"lora_name": "{name}", "lora_path": "{path}", "base_model_path": "{base}"}}'
        ).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.status


def test_the_openai_sdk_completes_with_an_adapter_by_name(engine, adapter):
    base, path = adapter
    assert load(engine, "tax-v1", base, path) == 200
    client = openai.OpenAI(base_url=engine[0] + "/v1", api_key=engine[1])
    assert "tax-v1" in [m.id for m in client.models.list()]
    answer = client.completions.create(
        model="tax-v1", prompt="Form 1040 line 1", max_tokens=5, temperature=0
    )
    assert answer.object == "text_completion" and answer.model == "tax-v1"
    assert answer.usage.completion_tokens <= 5 and answer.usage.prompt_tokens > 1
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    again = client.completions.create(
        model="tax-v1", prompt="Form 1040 line 1", max_tokens=5, temperature=0
    )
    assert again.choices[0].text == answer.choices[0].text  # greedy is deterministic


def test_the_engine_refuses_a_wrong_key_an_unknown_model_and_bad_parameters(engine, adapter):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=engine[0] + "/v1", api_key="wrong", max_retries=0).models.list()
    client = openai.OpenAI(base_url=engine[0] + "/v1", api_key=engine[1], max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-adapter", prompt="x", max_tokens=2)
    base, path = adapter
    load(engine, "tax-v1", base, path)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tax-v1", prompt="x", max_tokens=0)


def test_the_gateway_backend_verifies_the_adapter_before_the_engine_sees_it(
    engine, adapter, tmp_path
):
    import io
    import tarfile

    from trainers.hashing import file_sha256

    base, path = adapter
    store = LocalBlobStore(tmp_path / "blobs")
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:gz") as tar:
        tar.add(path, arcname="adapter")
    with store.stage("v1") as staged:
        staged.write(payload.getvalue())
    store.publish("v1", "adapters/v1")
    sha = file_sha256(path / "adapter_model.safetensors")
    backend = EngineBackend(engine[0], store, tmp_path / "cache", api_key=engine[1])
    good = Servable(
        uid="a" * 32, base_path=str(base), adapter_key="adapters/v1", adapter_sha256=sha
    )
    answer = backend.generate(good, "Schedule C", 3)
    assert answer.completion_tokens <= 3 and answer.prompt_tokens > 1
    tampered = Servable(
        uid="b" * 32, base_path=str(base), adapter_key="adapters/v1", adapter_sha256="0" * 64
    )
    # An adapter whose weights do not match is refused as untrusted (it may have been swapped).
    with pytest.raises(UntrustedAdapter, match="does not match its hash"):
        backend.generate(tampered, "Schedule C", 3)
    down = EngineBackend("http://127.0.0.1:9", store, tmp_path / "cache2", timeout=2)
    with pytest.raises(BackendError, match="did not answer") as refused:
        down.generate(good, "Schedule C", 3)
    assert refused.value.status == 503
    assert not down.healthy(good) and backend.healthy(good)
    backend.close()
    down.close()


def test_the_engine_chats_streams_and_stops_at_a_stop_string(engine, adapter):
    base, path = adapter
    load(engine, "tax-v1", base, path)
    client = openai.OpenAI(base_url=engine[0] + "/v1", api_key=engine[1], max_retries=0)
    whole = client.completions.create(
        model="tax-v1", prompt="Form 1040 line 1", max_tokens=12, temperature=0
    )
    pieces = list(
        client.completions.create(
            model="tax-v1",
            prompt="Form 1040 line 1",
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].text for c in pieces if c.choices)
    assert streamed == whole.choices[0].text
    assert pieces[-1].usage.completion_tokens == whole.usage.completion_tokens
    # A stop string taken from the greedy answer cuts it there, in whole and streamed answers.
    text = whole.choices[0].text
    if len(text) >= 4:
        stop = text[2:4]
        cut = client.completions.create(
            model="tax-v1", prompt="Form 1040 line 1", max_tokens=12, temperature=0, stop=[stop]
        )
        assert cut.choices[0].text == text[: text.find(stop)]
        assert cut.choices[0].finish_reason == "stop"
    chat = client.chat.completions.create(
        model="tax-v1",
        messages=[{"role": "user", "content": "What is Schedule C?"}],
        max_tokens=6,
        temperature=0,
    )
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert chat.usage.completion_tokens <= 6
    chunks = list(
        client.chat.completions.create(
            model="tax-v1",
            messages=[{"role": "user", "content": "What is Schedule C?"}],
            max_tokens=6,
            temperature=0,
            stream=True,
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks) == chat.choices[0].message.content
    )
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
