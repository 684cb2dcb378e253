"""Guardrails at query time: prompts and answers scanned with the domain's PII rules.

`policies/guardrails.yaml` says, per domain, what happens to the PII a scan finds:

    default:
      prompts: mask      # off | mask | block: a prompt's PII is masked, or the prompt refused
      answers: mask      # off | mask: an answer's PII is masked before the caller sees it
      block: []          # entity types that refuse a prompt whatever `prompts` says
      required: false    # true: refuse queries (503) when the guardrails cannot scan
    domains:
      consumer-tax: {required: true, block: [CREDIT_CARD]}

What counts as PII, and from which score, is the domain's pii.yaml (entities, thresholds,
allow patterns), the same rules its training data is scanned with. A masked value becomes
its type's placeholder (`<US_SSN>`), as in the sanitized training view. Only counts by type
are audited, never values.

The scan itself runs in the guardrails process (`govern guardrails`), never in the web process: it
answers Presidio's analyzer REST API (`POST /analyze`) with the domain's rules applied.
`GuardrailsClient` is the gateway's side; `LocalGuardrails` scans in the calling process (tests, the
benchmark, `GUARDRAILS_URL=inprocess`).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import urllib3
import yaml

from governance.errors import GovernanceError
from governance.gateway.backends import ONE_RETRY
from governance.pii.masking import mask_spans

GUARDRAILS_FILE = "guardrails.yaml"
PROMPT_ACTIONS = ("off", "mask", "block")
ANSWER_ACTIONS = ("off", "mask")
KEYS = frozenset({"prompts", "answers", "block", "required", "description"})


class GuardrailsError(GovernanceError):
    status = 500
    code = "guardrails_policy_error"


class GuardrailsUnavailable(GovernanceError):
    status = 503
    code = "guard_unavailable"


@dataclass(frozen=True)
class DomainGuard:
    prompts: str = "off"
    answers: str = "off"
    block: frozenset[str] = frozenset()
    required: bool = False

    @property
    def active(self) -> bool:
        return self.prompts != "off" or self.answers != "off" or bool(self.block)


@dataclass(frozen=True)
class Guardrails:
    default: DomainGuard
    domains: Mapping[str, DomainGuard] = field(default_factory=dict)

    def for_domain(self, domain: str) -> DomainGuard:
        return self.domains.get(domain, self.default)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    entity_type: str
    score: float


def _guard(raw: Any, where: str, base: DomainGuard) -> DomainGuard:
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise GuardrailsError(f"{GUARDRAILS_FILE} {where}: must be a mapping")
    unknown = set(raw) - KEYS
    if unknown:
        raise GuardrailsError(f"{GUARDRAILS_FILE} {where}: unknown key(s) {sorted(unknown)}")
    prompts = raw.get("prompts", base.prompts)
    answers = raw.get("answers", base.answers)
    if prompts not in PROMPT_ACTIONS:
        raise GuardrailsError(f"{GUARDRAILS_FILE} {where}.prompts: one of {PROMPT_ACTIONS}")
    if answers not in ANSWER_ACTIONS:
        raise GuardrailsError(f"{GUARDRAILS_FILE} {where}.answers: one of {ANSWER_ACTIONS}")
    block = raw.get("block", sorted(base.block))
    if not isinstance(block, list) or not all(isinstance(b, str) for b in block):
        raise GuardrailsError(f"{GUARDRAILS_FILE} {where}.block: a list of entity types")
    required = raw.get("required", base.required)
    if not isinstance(required, bool):
        raise GuardrailsError(f"{GUARDRAILS_FILE} {where}.required: true or false")
    return DomainGuard(prompts, answers, frozenset(block), required)


def parse(text: str) -> Guardrails:
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise GuardrailsError(f"{GUARDRAILS_FILE}: {exc}") from exc
    if not isinstance(document, dict) or set(document) - {"version", "default", "domains"}:
        raise GuardrailsError(f"{GUARDRAILS_FILE}: takes version, default and domains")
    default = _guard(document.get("default"), "default", DomainGuard())
    domains = document.get("domains") or {}
    if not isinstance(domains, dict):
        raise GuardrailsError(f"{GUARDRAILS_FILE}: domains must be a mapping")
    return Guardrails(
        default, {str(k): _guard(v, f"domains.{k}", default) for k, v in domains.items()}
    )


_cache: dict[Path, tuple[tuple[int, int], Guardrails]] = {}
_lock = threading.Lock()


def load(policy_dir: str | Path) -> Guardrails:
    """The guardrails of a policy directory (none when the file is absent), read again only
    when the file changes."""
    path = Path(policy_dir) / GUARDRAILS_FILE
    try:
        stat = path.stat()
    except FileNotFoundError:
        return Guardrails(DomainGuard())
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        cached = _cache.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
    found = parse(path.read_text())
    with _lock:
        _cache[path] = (stamp, found)
    return found


def lint(policy_dir: str | Path, domains: set[str]) -> list[str]:
    path = Path(policy_dir) / GUARDRAILS_FILE
    if not path.is_file():
        return []
    try:
        found = parse(path.read_text())
    except GuardrailsError as exc:
        return [exc.message]
    return [f"domain {d!r}: nothing defines it" for d in sorted(found.domains) if d not in domains]


def mask(text: str, spans: Sequence[Span]) -> str:
    """The text with each span replaced by its type's placeholder, as in the training view."""
    return mask_spans(text, spans)


def counts(spans_of_texts: Sequence[Sequence[Span]]) -> dict[str, int]:
    found: Counter[str] = Counter()
    for spans in spans_of_texts:
        found.update(s.entity_type for s in spans)
    return dict(sorted(found.items()))


class GuardrailsScanner(Protocol):
    def analyze(self, texts: Sequence[str], domain: str) -> list[list[Span]]: ...


class LocalGuardrails:
    """Scan in this process with a TextScanner and the domain's rules."""

    def __init__(self, scanner, policy_dir: str | Path) -> None:
        self.scanner = scanner
        self.policy_dir = Path(policy_dir)

    def analyze(self, texts: Sequence[str], domain: str) -> list[list[Span]]:
        from governance.pii.rules import load_rules

        rules = load_rules(self.policy_dir, domain)
        return [
            [Span(f.start, f.end, f.entity_type, f.score) for f in findings]
            for findings in self.scanner.scan_texts(list(texts), rules)
        ]


class GuardrailsClient:
    """The guardrails process over HTTP (`govern guardrails`), connections kept alive."""

    def __init__(self, url: str, api_key: str = "", timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self._http = urllib3.PoolManager(
            maxsize=64,
            block=False,
            retries=ONE_RETRY,
            timeout=urllib3.Timeout(connect=3, read=timeout),
        )

    def close(self) -> None:
        self._http.clear()

    def analyze(self, texts: Sequence[str], domain: str) -> list[list[Span]]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            response = self._http.request(
                "POST",
                self.url + "/analyze",
                body=json.dumps({"texts": list(texts), "domain": domain, "language": "en"}),
                headers=headers,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise GuardrailsUnavailable(
                f"the guardrails at {self.url} did not answer: {getattr(exc, 'reason', exc)}"
            ) from None
        if response.status != 200:
            raise GuardrailsUnavailable(f"the guardrails answered HTTP {response.status}")
        return [
            [
                Span(int(r["start"]), int(r["end"]), str(r["entity_type"]), float(r["score"]))
                for r in spans
            ]
            for spans in json.loads(response.data)["results"]
        ]
