"""Base models, model families and model versions; their API schemas."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from governance.db import INT_MAX, UTCDateTime, utcnow

NAME_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"


class VersionState:
    TRAINING = "training"
    TRAINED = "trained"
    EVALUATED = "evaluated"
    PENDING_APPROVAL = "pending-approval"
    PRODUCTION = "production"
    RETIRED = "retired"
    FAILED = "failed"
    TAINTED = "tainted"
    # A version in one of these may serve queries (production first, else a fallback).
    SERVABLE = frozenset({PRODUCTION, RETIRED})


class BaseModelRecord(SQLModel, table=True):
    """A registered local model directory in Hugging Face format, named by its weight hash."""

    __tablename__ = "base_models"

    id: int | None = SQLField(default=None, primary_key=True)
    name: str = SQLField(max_length=63, unique=True, nullable=False)
    path: str = SQLField(max_length=500, nullable=False)
    weights_hash: str = SQLField(max_length=64, nullable=False)
    architecture: str = SQLField(max_length=63, nullable=False)
    registered_by: str = SQLField(max_length=63, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Intake: where the weights came from, under which license (an SPDX expression), the
    # SHA-256 of every file and of the model card. A family may use a base only in a domain
    # whose reviewers approved it (a `base-model-use` approval bound to all of these).
    source: str = SQLField(default="", max_length=500, nullable=False)
    license: str = SQLField(default="", max_length=200, nullable=False)
    files: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    card_sha256: str | None = SQLField(default=None, max_length=64)
    # `active`, or `withdrawn`: no new use, and every version built on it is tainted.
    status: str = SQLField(default="active", max_length=16, nullable=False)
    withdrawn_reason: str | None = SQLField(default=None, max_length=500)
    withdrawn_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)


class BaseModelState:
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"


class BaseModelRead(BaseModel):
    name: str
    architecture: str
    weights_hash: str
    source: str
    license: str
    files: dict[str, Any]
    card_sha256: str | None
    status: str
    withdrawn_reason: str | None
    registered_by: str
    created_at: dt.datetime
    withdrawn_at: dt.datetime | None
    approved_domains: list[str] = Field(
        default_factory=list, description="Domains whose reviewers approved its use."
    )


class BaseModelList(BaseModel):
    items: list[BaseModelRead]


class BaseWithdraw(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500)


class ModelFamily(SQLModel, table=True):
    """A line of models in one domain: base model, LoRA recipe, eval suite, refresh schedule."""

    __tablename__ = "model_families"

    id: int | None = SQLField(default=None, primary_key=True)
    # Family names are global: the gateway addresses a family by name alone.
    name: str = SQLField(max_length=63, unique=True, nullable=False)
    domain_id: int = SQLField(foreign_key="domains.id", nullable=False, index=True)
    base_model_id: int = SQLField(foreign_key="base_models.id", nullable=False)
    lora: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    hyperparameters: dict[str, Any] = SQLField(
        default_factory=dict, sa_type=sa.JSON, nullable=False
    )
    eval_suite: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    # The differential-privacy recipe (PrivacyRecipe as a dict); None trains without DP.
    privacy: dict[str, Any] | None = SQLField(default=None, sa_type=sa.JSON, nullable=True)
    refresh_schedule: str = SQLField(max_length=100, nullable=False)
    seed: int = SQLField(default=1234, nullable=False)
    created_by: str = SQLField(max_length=63, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # One more on every change to any of the family's versions, counted by the database (a
    # trigger, migration 0021): the gateway keeps the family's serving variants until it moves.
    serving_revision: int = SQLField(
        default=0, nullable=False, sa_column_kwargs={"server_default": "0"}
    )


class ModelVersion(SQLModel, table=True):
    """One trained adapter of a family, with everything needed to say how it was made."""

    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("family_id", "number"),)

    id: int | None = SQLField(default=None, primary_key=True)
    uid: str = SQLField(max_length=32, unique=True, nullable=False)
    family_id: int = SQLField(foreign_key="model_families.id", nullable=False, index=True)
    number: int = SQLField(nullable=False)
    tax_year: int = SQLField(nullable=False)
    status: str = SQLField(max_length=20, nullable=False, index=True)
    parent_id: int | None = SQLField(default=None, foreign_key="model_versions.id")
    base_model_id: int = SQLField(foreign_key="base_models.id", nullable=False)
    base_weights_hash: str = SQLField(max_length=64, nullable=False)
    # [{uid, dataset, version, content_hash, receipt, rules_hash, sanitized_hash, approval}]
    datasets: list[Any] = SQLField(default_factory=list, sa_type=sa.JSON, nullable=False)
    training_config: dict[str, Any] = SQLField(
        default_factory=dict, sa_type=sa.JSON, nullable=False
    )
    code_version: str = SQLField(max_length=100, nullable=False)
    policy_hash: str = SQLField(max_length=64, nullable=False)
    metrics: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    evaluation: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    adapter_key: str | None = SQLField(default=None, max_length=200)
    # The OpenSSF model-signing bundle over the adapter and its base's manifest, made at
    # promotion; the gateway serves no adapter whose signature does not verify.
    adapter_signature: str | None = SQLField(default=None, sa_type=sa.Text)
    adapter_manifest: dict[str, Any] = SQLField(
        default_factory=dict, sa_type=sa.JSON, nullable=False
    )
    trained_by: str = SQLField(max_length=63, nullable=False)
    status_reason: str | None = SQLField(default=None, max_length=500)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    promoted_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    tainted_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)


class RetrainRequest(SQLModel, table=True):
    """A tax year of a family to train again, because its serving version was tainted.

    The refresh pipeline takes these up: it retrains from the base model on the year's data
    that remains (scanned and approved), then evaluates, approves and promotes as usual.
    """

    __tablename__ = "retrain_requests"

    id: int | None = SQLField(default=None, primary_key=True)
    family_id: int = SQLField(foreign_key="model_families.id", nullable=False, index=True)
    tax_year: int = SQLField(nullable=False)
    reason: str = SQLField(max_length=500, nullable=False)
    state: str = SQLField(default="queued", max_length=16, nullable=False, index=True)
    requested_by: str = SQLField(max_length=63, nullable=False)
    requested_at: dt.datetime = SQLField(
        default_factory=utcnow, sa_type=UTCDateTime, nullable=False
    )
    done_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)


class ModelSweep(SQLModel, table=True):
    """A size sweep: the same approved data trained on several registered bases (one version
    each), compared on one metric, latency per token and memory; the smallest base within
    the tolerance of the best is the one to keep."""

    __tablename__ = "model_sweeps"

    id: int | None = SQLField(default=None, primary_key=True)
    uid: str = SQLField(max_length=32, unique=True, nullable=False)
    family_id: int = SQLField(foreign_key="model_families.id", nullable=False, index=True)
    metric: str = SQLField(max_length=200, nullable=False)
    tolerance: float = SQLField(nullable=False)
    # [{"base": name, "version_id": id}], in the order asked for.
    runs: list[dict[str, Any]] = SQLField(default_factory=list, sa_type=sa.JSON, nullable=False)
    requested_by: str = SQLField(max_length=63, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ReviewItem(SQLModel, table=True):
    """One sampled conversation of a candidate version, for domain experts and the judge:
    the turns of a conversation from the domain's criteria file and the model's answers
    (masked by the domain's PII rules before they are stored)."""

    __tablename__ = "review_items"
    __table_args__ = (sa.UniqueConstraint("version_id", "conversation"),)

    id: int | None = SQLField(default=None, primary_key=True)
    uid: str = SQLField(max_length=32, unique=True, nullable=False)
    version_id: int = SQLField(foreign_key="model_versions.id", nullable=False, index=True)
    conversation: str = SQLField(max_length=63, nullable=False)
    transcript: list[dict[str, Any]] = SQLField(
        default_factory=list, sa_type=sa.JSON, nullable=False
    )
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ReviewScore(SQLModel, table=True):
    """A score on one criterion of one review item, by a domain expert or by the judge;
    signed by the service key (its digest covers the item, criterion, score, reviewer,
    time and the comment's hash)."""

    __tablename__ = "review_scores"
    __table_args__ = (sa.UniqueConstraint("item_id", "source", "reviewer", "criterion"),)

    id: int | None = SQLField(default=None, primary_key=True)
    item_id: int = SQLField(foreign_key="review_items.id", nullable=False, index=True)
    source: str = SQLField(max_length=16, nullable=False)  # expert | judge
    reviewer: str = SQLField(max_length=200, nullable=False)
    criterion: str = SQLField(max_length=63, nullable=False)
    score: int = SQLField(nullable=False)
    comment: str = SQLField(default="", max_length=2000, nullable=False)
    digest: str = SQLField(max_length=64, nullable=False)
    signature: str = SQLField(max_length=128, nullable=False)
    key_id: str = SQLField(max_length=64, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


# --- API schemas ----------------------------------------------------------------------------


class ChoiceItem(BaseModel):
    """A multiple-choice question scored by the likelihood of each choice."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=2000)
    choices: list[str] = Field(min_length=2, max_length=20)
    answer: int = Field(ge=0, description="The index of the right choice.")

    @model_validator(mode="after")
    def _answer_is_a_choice(self) -> ChoiceItem:
        if self.answer >= len(self.choices):
            raise ValueError(
                f"answer {self.answer} is not an index of the {len(self.choices)} choices"
            )
        return self


# The gate measures a gain on the held-out part with a paired test over its records; with
# fewer than this many it cannot tell a gain from noise. A training request whose data cannot
# fill it is refused when it is made, and the bundle's split always holds at least this many.
MIN_HELD_OUT_RECORDS = 5


class EvalSuite(BaseModel):
    """How the gate evaluates a family's versions (lm-evaluation-harness on the worker)."""

    model_config = ConfigDict(extra="forbid")

    holdout_fraction: float = Field(default=0.1, gt=0, le=0.5)
    tolerance: float = Field(
        default=0.05, ge=0, le=1, description="How much worse than production a version may be."
    )
    multiple_choice: list[ChoiceItem] = Field(default_factory=list, max_length=10_000)
    few_shot: int = Field(
        default=3, ge=0, le=16, description="Examples in the few-shot baseline's prompts."
    )
    harness_tasks: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Installed lm-evaluation-harness tasks to run as well (datasets cached "
        "locally; nothing downloads).",
    )
    accept_no_signal: bool = Field(
        default=False,
        description="Pass the gate even when the candidate shows no measurable skill on the "
        "held-out data (its held-out loss within 2 standard errors of the base's and no "
        "task's gain beyond its noise). Off: such a version fails, since its gate says "
        "nothing.",
    )
    min_gain: dict[str, float] = Field(
        default_factory=dict,
        description="Least gain over the untuned base (the better of zero- and few-shot) per "
        '`task/metric`, e.g. {"governance_choice/acc": 0.05}; positive is better.',
    )

    @model_validator(mode="after")
    def _enough_items_for_the_shots(self) -> EvalSuite:
        # The harness puts `few_shot` other items in each prompt: with fewer, the few-shot
        # baseline would silently not run.
        if self.multiple_choice and self.few_shot and len(self.multiple_choice) <= self.few_shot:
            raise ValueError(
                f"a {self.few_shot}-shot baseline needs at least {self.few_shot + 1} "
                f"multiple_choice items (it has {len(self.multiple_choice)}): add items, or set "
                f"few_shot to at most {len(self.multiple_choice) - 1}"
            )
        return self

    @field_validator("harness_tasks")
    @classmethod
    def _task_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,100}", name):
                raise ValueError(f"{name!r} is not a harness task name")
        return value

    @field_validator("min_gain")
    @classmethod
    def _gain_keys(cls, value: dict[str, float]) -> dict[str, float]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,100}/[A-Za-z0-9_]{1,60}", key):
                raise ValueError(f"{key!r} is not a task/metric name")
        return value


class PrivacyRecipe(BaseModel):
    """Train the LoRA parameters with DP-SGD (trainers.privacy): the accountant spends at most
    `epsilon` at `delta` per version, per unit of privacy (the customer when the domain's
    rules name a customer key, else the record)."""

    model_config = ConfigDict(extra="forbid")

    # Below 0.05 the noise needed is beyond what the accountant's search covers, and such a
    # model learns nothing; above 100 the bound says nothing.
    epsilon: float = Field(ge=0.05, le=100)
    delta: float = Field(default=1e-6, gt=0, lt=0.01)
    max_grad_norm: float = Field(default=1.0, gt=0, le=1000)
    sampling: Literal["poisson"] = "poisson"
    compare: bool = Field(
        default=False,
        description="Also train the same bundle without DP (its adapter discarded) and record "
        "its utility, exposure and attack figures beside the private version's.",
    )


class FamilyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    base_model: str = Field(min_length=1, max_length=63, description="A registered base model.")
    lora: dict[str, Any] = Field(
        default_factory=lambda: {"r": 8, "alpha": 16, "dropout": 0.0},
        description="LoRA config: r, alpha, dropout, target_modules.",
    )
    hyperparameters: dict[str, Any] = Field(
        default_factory=lambda: {"epochs": 2, "learning_rate": 0.002, "batch_size": 8}
    )
    eval_suite: EvalSuite = Field(default_factory=EvalSuite)
    refresh_schedule: str = Field(
        default="0 6 15 1 *", max_length=100, description="Cron: by default 15 January, 06:00."
    )
    seed: int = Field(default=1234, ge=0, le=2**31 - 1)
    privacy: PrivacyRecipe | None = Field(
        default=None, description="Train with differential privacy (DP-SGD) at this budget."
    )


class FamilyRead(BaseModel):
    name: str
    domain: str
    base_model: str
    lora: dict[str, Any]
    hyperparameters: dict[str, Any]
    eval_suite: dict[str, Any]
    privacy: dict[str, Any] | None = None
    refresh_schedule: str
    production_version: int | None
    variants: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Each base model the family serves from: its serving version and state.",
    )
    created_by: str
    created_at: dt.datetime


class FamilyList(BaseModel):
    items: list[FamilyRead]


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: int = Field(ge=1, le=INT_MAX)
    version: int = Field(ge=1, le=INT_MAX)


class VersionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tax_year: int = Field(ge=1900, le=2200)
    datasets: list[DatasetRef] = Field(min_length=1, max_length=20)
    base_model: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="Train a variant on another registered base model (by default the "
        "family's own); each base's versions are promoted and served as a variant.",
    )


class SweepCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bases: list[str] = Field(
        min_length=2, max_length=10, description="Registered base models, each approved."
    )
    tax_year: int = Field(ge=1900, le=2200)
    datasets: list[DatasetRef] = Field(min_length=1, max_length=20)
    metric: str = Field(
        default="governance_perplexity/bits_per_byte",
        pattern=r"^[A-Za-z0-9_.\-]{1,100}/[A-Za-z0-9_]{1,60}$",
        description="The harness task/metric the bases are compared on.",
    )
    tolerance: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="How far from the best score (relative) a base may be and still be kept.",
    )

    @field_validator("bases")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each base model once")
        return value


class SweepRow(BaseModel):
    base_model: str
    version: int
    status: str
    parameters: int | None
    score: float | None
    higher_is_better: bool | None
    ms_per_token: float | None
    memory_bytes: int | None = Field(description="Peak accelerator memory, else weight bytes.")
    within_tolerance: bool
    chosen: bool


class SweepRead(BaseModel):
    uid: str
    family: str
    metric: str
    tolerance: float
    complete: bool = Field(description="Every version has been through its gate.")
    chosen: str | None = Field(description="The smallest base within tolerance of the best.")
    rows: list[SweepRow]
    requested_by: str
    created_at: dt.datetime


class SweepList(BaseModel):
    items: list[SweepRead]


class ExpertScores(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scores: dict[str, int] = Field(
        min_length=1, description="Criterion name to a score on the criteria file's 1-5 scale."
    )
    comment: str = Field(default="", max_length=2000)

    @field_validator("scores")
    @classmethod
    def _scale(cls, value: dict[str, int]) -> dict[str, int]:
        for name, score in value.items():
            if not 1 <= score <= 5:
                raise ValueError(f"{name}: {score} is not on the 1-5 scale")
        return value


class VersionWork(BaseModel):
    """The job a version waits on (training, then its evaluation gate), as it stands."""

    job: str
    kind: str
    state: str
    attempt: int
    progress: dict[str, Any] = Field(
        description="The worker's latest report: training's `step` of `of` (epoch, loss), "
        "the gate's `stage`."
    )
    queued_at: dt.datetime
    heartbeat_at: dt.datetime | None


class VersionRead(BaseModel):
    family: str
    version: int
    uid: str
    base_model: str
    tax_year: int
    status: str
    status_reason: str | None
    parent: int | None
    base_weights_hash: str
    datasets: list[Any]
    metrics: dict[str, Any]
    evaluation: dict[str, Any]
    trained_by: str
    policy_hash: str
    created_at: dt.datetime
    promoted_at: dt.datetime | None
    tainted_at: dt.datetime | None
    work: VersionWork | None = Field(
        default=None, description="While it trains or waits for its gate: that job's progress."
    )


class VersionList(BaseModel):
    items: list[VersionRead]
