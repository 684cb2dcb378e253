"""A domain's review criteria (`policies/criteria/<domain>.yaml`): named criteria on a 1-5
scale with guidance, multi-turn conversations to sample, and the judge's settings. Policy as
code: parsed here (pure), linted by `govern policy lint`, used by governance.families.review.

    version: 1
    criteria:
      - name: correct
        question: Is the answer right under the tax year's law?
        guidance: {1: wrong or harmful, 3: partly right, 5: right and complete}
    conversations:
      - id: agi
        turns: [What is adjusted gross income?, Which line of Form 1040 holds it?]
    judge:
      url: https://gateway.example.internal/v1   # any OpenAI-compatible endpoint
      model: tax-judge
      token_env: GOVERNANCE_JUDGE_TOKEN          # its API key, from the environment
      min_kappa: 0.6       # agreement with the experts (quadratic weighted kappa) ...
      min_items: 10        # ... over at least this many items, before the judge may gate
      gate: true           # once trusted, a mean under min_score on a criterion fails a version
      min_score: 3.0
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from governance.errors import InvalidInput

CRITERIA_DIR = "criteria"
NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
SCALE = (1, 2, 3, 4, 5)


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME)
    question: str = Field(min_length=1, max_length=1000)
    guidance: dict[int, str] = Field(default_factory=dict)

    @field_validator("guidance")
    @classmethod
    def _on_scale(cls, value: dict[int, str]) -> dict[int, str]:
        off = sorted(set(value) - set(SCALE))
        if off:
            raise ValueError(f"guidance for {off}: the scale is 1-5")
        return value


class Conversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=NAME)
    turns: list[str] = Field(min_length=1, max_length=8)


class Judge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, description="OpenAI-compatible base URL (…/v1).")
    model: str | None = None
    # The judge's API key is read from this environment variable, never written here.
    token_env: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]{0,99}$")
    timeout_seconds: float = Field(default=60, gt=0, le=600)
    min_kappa: float = Field(default=0.6, ge=-1, le=1)
    min_items: int = Field(default=10, ge=1)
    gate: bool = False
    min_score: float = Field(default=3.0, ge=1, le=5)


class Criteria(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    criteria: list[Criterion] = Field(min_length=1, max_length=20)
    conversations: list[Conversation] = Field(default_factory=list, max_length=200)
    judge: Judge = Field(default_factory=Judge)

    @field_validator("criteria")
    @classmethod
    def _unique_criteria(cls, value: list[Criterion]) -> list[Criterion]:
        names = [c.name for c in value]
        if len(set(names)) != len(names):
            raise ValueError("criterion names must be unique")
        return value

    @field_validator("conversations")
    @classmethod
    def _unique_conversations(cls, value: list[Conversation]) -> list[Conversation]:
        ids = [c.id for c in value]
        if len(set(ids)) != len(ids):
            raise ValueError("conversation ids must be unique")
        return value

    def names(self) -> list[str]:
        return [c.name for c in self.criteria]


def _parse(path: Path) -> Criteria:
    try:
        return Criteria.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{path.name}: {where}: {first['msg']}") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path.name}: not valid YAML: {exc}") from exc


def load_criteria(policy_dir: str | Path, domain: str) -> Criteria | None:
    """The domain's criteria, or None when it has no criteria file."""
    path = Path(policy_dir) / CRITERIA_DIR / f"{domain}.yaml"
    return _parse(path) if path.is_file() else None


def lint(root: Path, domains: set[str]) -> list[tuple[str, str]]:
    """(file, problem) for each criteria file that does not parse or names no known domain."""
    problems = []
    for path in sorted((root / CRITERIA_DIR).glob("*.yaml")):
        name = f"{CRITERIA_DIR}/{path.name}"
        if path.stem not in domains:
            problems.append((name, f"no domain {path.stem!r} is declared in domains.yaml"))
            continue
        try:
            _parse(path)
        except InvalidInput as exc:
            problems.append((name, exc.message))
    return problems
