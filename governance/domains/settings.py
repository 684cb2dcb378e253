"""What `policies/domains.yaml` says of each domain beyond its name: who hears of its
lifecycle events (webhook subscribers), how long its records are kept (retention), and how
strictly the evaluation gate tests a version for memorization.

Both are policy as code: reviewed in pull requests, checked by `govern policy lint`, hashed
with the rest of the policy. Secrets are never written here: a subscriber's signing secret is
read from the environment or a 0600 file under GOVERNANCE_HOME (see governance.webhooks).
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DOMAINS_FILE = "domains.yaml"

# The lifecycle events a subscriber may ask for, each derived from one audit action.
EVENT_TYPES: dict[str, str] = {
    "model.train": "model.version.created",
    "approval.decide": "approval.decided",
    "model.promote": "model.version.promoted",
    "model.taint": "model.version.tainted",
    "model.rollback": "model.version.rolled_back",
    "dataset.delete": "dataset.version.deleted",
}
EVENTS = tuple(EVENT_TYPES.values())

_DURATION = re.compile(r"^(\d{1,4})([dy])$")
DAYS_PER_YEAR = 366  # a year of retention is never shorter than a calendar year


def duration_days(text: str) -> int:
    """`90d` or `7y` as a number of days (years count 366 days: never too short)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90d or 7y")
    count, unit = int(match[1]), match[2]
    if count < 1:
        raise ValueError("a retention period is at least one day")
    return count * (DAYS_PER_YEAR if unit == "y" else 1)


Duration = Annotated[str, Field(pattern=r"^\d{1,4}[dy]$")]


class Retention(BaseModel):
    """How long a domain's records are kept; none of them is pruned unless named here.

    audit_entries  the audit log's entries (pruned ranges stay provable by their checkpoints)
    receipts       scan receipts of deleted dataset versions
    reports        job reports (scan, evaluation and export results) of finished jobs
    """

    model_config = ConfigDict(extra="forbid")

    audit_entries: Duration | None = None
    receipts: Duration | None = None
    reports: Duration | None = None

    def days(self) -> dict[str, int]:
        return {k: duration_days(v) for k, v in self.model_dump().items() if v is not None}


class Memorization(BaseModel):
    """The gate's memorization test (governance.training.canaries): `canaries` synthetic
    secrets, each inserted `repetitions` times into the sanitized training set; after training
    each is ranked by likelihood among `candidates` random secrets of the same format, and a
    version whose mean exposure exceeds `max_exposure_bits` is refused. `canaries: 0` turns
    the test off for the domain."""

    model_config = ConfigDict(extra="forbid")

    canaries: int = Field(default=8, ge=0, le=64)
    repetitions: int = Field(default=1, ge=1, le=100)
    candidates: int = Field(default=1000, ge=100, le=100_000)
    max_exposure_bits: float = Field(default=5.0, gt=0)


class PrivacyBudget(BaseModel):
    """The total privacy loss the domain's customers may bear from the models trained on their
    data over a rolling period: every version trained with differential privacy counts its
    (epsilon, delta) until it is no longer served and its artifacts are destroyed, and the
    versions inside the period compose by their sum (basic composition, which holds for any
    mix of mechanisms)."""

    model_config = ConfigDict(extra="forbid")

    epsilon: float = Field(gt=0, le=1000)
    delta: float = Field(default=1e-5, gt=0, lt=0.1)
    years: int = Field(default=5, ge=1, le=50)


class Privacy(BaseModel):
    """Differential privacy for the domain's models.

    (The unit of privacy is the customer where the domain's PII rules name a customer key,
    `unit_key` in pii.yaml: the sanitized view carries only its keyed hash. Otherwise it is the
    record.)

    budget     the total over a rolling period (PrivacyBudget); a DP training request that
               would exceed it is refused with the numbers.
    required   every version of the domain must be trained with DP (default false).
    max_membership_auc
               the evaluation gate refuses a version whose membership-inference attacks (loss,
               and reference-model) reach this AUC or more (none: reported only).
    """

    model_config = ConfigDict(extra="forbid")

    budget: PrivacyBudget | None = None
    required: bool = False
    max_membership_auc: float | None = Field(default=None, gt=0.5, le=1.0)


class Subscriber(BaseModel):
    """A system that receives a domain's lifecycle events, signed (Standard Webhooks)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    url: str = Field(max_length=2000)
    events: list[str] = Field(min_length=1)
    # Attempts before a delivery is marked failed (it can still be redelivered by hand).
    max_attempts: int = Field(default=8, ge=1, le=30)
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials (the signature authenticates us)")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError("must be https (plain http only to a loopback address)")
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        if value == ["*"]:
            return list(EVENTS)
        unknown = sorted(set(value) - set(EVENTS))
        if unknown:
            raise ValueError(f"unknown events {unknown}; known: {', '.join(EVENTS)}")
        return sorted(set(value))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DomainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    retention: Retention = Field(default_factory=Retention)
    memorization: Memorization = Field(default_factory=Memorization)
    privacy: Privacy = Field(default_factory=Privacy)
    webhooks: list[Subscriber] = Field(default_factory=list)


class SettingsError(ValueError):
    """domains.yaml does not say something this module can use."""


def _parse(text: str) -> dict[str, DomainSettings]:
    document = yaml.safe_load(text) or {}
    domains = document.get("domains") or {}
    if not isinstance(domains, dict):
        raise SettingsError("`domains` must be a mapping")
    parsed: dict[str, DomainSettings] = {}
    names: dict[str, str] = {}
    for name, body in domains.items():
        try:
            parsed[str(name)] = DomainSettings.model_validate(body or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SettingsError(f"domains.{name}.{where}: {first['msg']}") from exc
        for subscriber in parsed[str(name)].webhooks:
            if subscriber.name in names:
                raise SettingsError(
                    f"domains.{name}.webhooks: subscriber {subscriber.name!r} is already "
                    f"declared in {names[subscriber.name]} (names are unique: they key secrets)"
                )
            names[subscriber.name] = str(name)
    return parsed


@lru_cache(maxsize=16)
def _cached(path: str, mtime_ns: int, size: int) -> dict[str, DomainSettings]:
    return _parse(Path(path).read_text())


def load_domain_settings(policy_dir: str | Path) -> dict[str, DomainSettings]:
    """Every declared domain's settings (cached until the file changes)."""
    path = Path(policy_dir) / DOMAINS_FILE
    if not path.is_file():
        return {}
    stat = path.stat()
    return _cached(str(path), stat.st_mtime_ns, stat.st_size)


def subscribers(policy_dir: str | Path) -> dict[str, tuple[str, Subscriber]]:
    """Every webhook subscriber by name, with its domain."""
    return {
        s.name: (domain, s)
        for domain, settings in load_domain_settings(policy_dir).items()
        for s in settings.webhooks
    }


def lint(root: Path) -> list[str]:
    """Problems in domains.yaml's webhook and retention sections (empty when it is fine)."""
    path = root / DOMAINS_FILE
    if not path.is_file():
        return []
    try:
        _parse(path.read_text())
    except (SettingsError, yaml.YAMLError) as exc:
        return [str(exc)]
    return []


def memorization(policy_dir: str | Path, domain: str) -> Memorization:
    """The domain's memorization test settings (the defaults when domains.yaml is silent)."""
    settings = load_domain_settings(policy_dir).get(domain)
    return settings.memorization if settings else Memorization()


def privacy(policy_dir: str | Path, domain: str) -> Privacy:
    """The domain's differential-privacy settings (none when domains.yaml is silent)."""
    settings = load_domain_settings(policy_dir).get(domain)
    return settings.privacy if settings else Privacy()


def describe(settings: DomainSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")
