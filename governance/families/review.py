"""Expert review and a judge you can trust.

`policies/criteria/<domain>.yaml` names the domain's criteria (each a question with guidance
on a 1-5 scale) and a few multi-turn conversations (MT-Bench style). When a candidate passes
the rest of its gate, the gate samples its answers to every conversation (masked by the
domain's PII rules before they are stored) as review items. Domain experts (role
`domain-expert`) score items against the criteria in the console or the API; a judge (any
OpenAI-compatible endpoint the file names, such as a larger model behind this project's own
gateway) scores the same items against the same criteria. Every score is signed by the
service key and audited.

The judge earns its say: its agreement with the experts on the domain is Cohen's quadratic
weighted kappa over every (item, criterion) both scored, and only when the kappa reaches
`judge.min_kappa` over at least `judge.min_items` items may the judge's scores gate a
version (`judge.gate`: a mean under `judge.min_score` on any criterion fails it). Until
then its scores are recorded as advisory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlmodel import Session, select

from audit.log import canonical, key_id
from governance.audit.service import Actor, format_time, record
from governance.db import utcnow
from governance.domains.models import Domain
from governance.errors import InvalidInput, NotFound
from governance.families.criteria import SCALE, Criteria, Judge
from governance.families.models import ModelFamily, ModelVersion, ReviewItem, ReviewScore

EXPERT, JUDGE = "expert", "judge"
ANSWER_TOKENS = 128


# --- sampling ---------------------------------------------------------------------------------


def render_prompt(transcript: list[dict[str, str]]) -> str:
    """A conversation as a plain prompt (a base model has no chat template), ending with the
    assistant's turn to speak."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in transcript]
    return "\n".join([*lines, "Assistant:"])


def sample(
    session: Session,
    version: ModelVersion,
    criteria: Criteria,
    answer,
    mask,
) -> list[ReviewItem]:
    """Answer every conversation of the criteria file with the version (`answer(prompt)` gives
    the model's text, `mask(text)` the text with personal data replaced), turn by turn."""
    existing = {
        i.conversation
        for i in session.exec(select(ReviewItem).where(ReviewItem.version_id == version.id))
    }
    items = []
    for conversation in criteria.conversations:
        if conversation.id in existing:
            continue
        transcript: list[dict[str, str]] = []
        for turn in conversation.turns:
            transcript.append({"role": "user", "content": turn})
            reply = answer(render_prompt(transcript)).split("\nUser:")[0].strip()
            transcript.append({"role": "assistant", "content": mask(reply)})
        item = ReviewItem(
            uid=uuid.uuid4().hex,
            version_id=version.id,
            conversation=conversation.id,
            transcript=transcript,
        )
        session.add(item)
        items.append(item)
    session.flush()
    return items


# --- scores -------------------------------------------------------------------------------------


def score_digest(
    item: ReviewItem, source: str, reviewer: str, criterion: str, score: int, at: str, comment: str
) -> str:
    return hashlib.sha256(
        canonical(
            {
                "item": item.uid,
                "transcript_sha256": hashlib.sha256(canonical(item.transcript)).hexdigest(),
                "source": source,
                "reviewer": reviewer,
                "criterion": criterion,
                "score": score,
                "time": at,
                "comment_sha256": hashlib.sha256(comment.encode()).hexdigest(),
            }
        )
    ).hexdigest()


def _signed_score(
    key, item: ReviewItem, source: str, reviewer: str, criterion: str, score: int, comment: str
) -> ReviewScore:
    now = utcnow()
    digest = score_digest(item, source, reviewer, criterion, score, format_time(now), comment)
    return ReviewScore(
        item_id=item.id,
        source=source,
        reviewer=reviewer,
        criterion=criterion,
        score=score,
        comment=comment,
        digest=digest,
        signature=key.sign(bytes.fromhex(digest)).hex(),
        key_id=key_id(key.public_key()),
        created_at=now,
    )


def get_item(session: Session, version: ModelVersion, uid: str) -> ReviewItem:
    item = session.exec(
        select(ReviewItem).where(ReviewItem.uid == uid, ReviewItem.version_id == version.id)
    ).first()
    if item is None:
        raise NotFound(f"no review item {uid} of this version")
    return item


def add_expert_scores(
    session: Session,
    key,
    family: ModelFamily,
    domain: Domain,
    version: ModelVersion,
    item: ReviewItem,
    scores: dict[str, int],
    comment: str,
    criteria: Criteria,
    *,
    actor: Actor,
) -> list[ReviewScore]:
    """An expert's scores on one item (one per criterion, replacing their earlier ones)."""
    unknown = sorted(set(scores) - set(criteria.names()))
    if unknown:
        raise InvalidInput(
            f"unknown criteria {unknown}; {domain.name} has {criteria.names()}",
            details={"field": "scores"},
        )
    rows = []
    for criterion, score in sorted(scores.items()):
        earlier = session.exec(
            select(ReviewScore).where(
                ReviewScore.item_id == item.id,
                ReviewScore.source == EXPERT,
                ReviewScore.reviewer == actor.principal,
                ReviewScore.criterion == criterion,
            )
        ).first()
        if earlier is not None:
            session.delete(earlier)
            session.flush()
        row = _signed_score(key, item, EXPERT, actor.principal, criterion, score, comment)
        session.add(row)
        rows.append(row)
    record(
        session,
        actor,
        "review.score",
        f"model/{family.name}",
        domain.name,
        details={
            "version": version.number,
            "item": item.uid,
            "scores": dict(sorted(scores.items())),
            "digests": [r.digest for r in rows],
        },
    )
    return rows


# --- the judge ----------------------------------------------------------------------------------


def judge_messages(criteria: Criteria, item: ReviewItem) -> list[dict[str, str]]:
    """The judge's instructions: the criteria with their guidance, the conversation, and the
    JSON it must answer with."""
    rubric = []
    for c in criteria.criteria:
        guide = "; ".join(f"{k}: {v}" for k, v in sorted(c.guidance.items()))
        rubric.append(f"- {c.name}: {c.question}" + (f" ({guide})" if guide else ""))
    conversation = "\n".join(f"{m['role'].upper()}: {m['content']}" for m in item.transcript)
    names = ", ".join(f'"{n}": <1-5>' for n in criteria.names())
    return [
        {
            "role": "system",
            "content": "You grade an AI assistant's answers for domain experts. Score each "
            "criterion on a 1-5 scale, following its guidance. Answer with one JSON object "
            f'and nothing else: {{"scores": {{{names}}}}}.',
        },
        {
            "role": "user",
            "content": f"Criteria:\n{chr(10).join(rubric)}\n\nConversation "
            f"({item.conversation}):\n{conversation}",
        },
    ]


def parse_verdict(text: str, names: list[str]) -> dict[str, int]:
    """The judge's scores from its answer (the first JSON object in it), each on the scale."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        raise ValueError("the judge's answer holds no JSON object")
    document = json.loads(match.group(0))
    scores = document.get("scores", document)
    out = {}
    for name in names:
        value = scores.get(name)
        if not isinstance(value, int | float) or int(value) != value or int(value) not in SCALE:
            raise ValueError(f"the judge gave no 1-5 score for {name!r}")
        out[name] = int(value)
    return out


def ask_judge(judge: Judge, messages: list[dict[str, str]]) -> str:
    """One chat completion from the judge's OpenAI-compatible endpoint (temperature 0)."""
    import urllib3

    headers = {"Content-Type": "application/json"}
    token = os.environ.get(judge.token_env or "")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"model": judge.model, "messages": messages, "temperature": 0, "max_tokens": 256}
    response = urllib3.request(
        "POST",
        f"{(judge.url or '').rstrip('/')}/chat/completions",
        body=json.dumps(body).encode(),
        headers=headers,
        timeout=judge.timeout_seconds,
        retries=False,
    )
    if response.status != 200:
        raise ValueError(f"the judge answered HTTP {response.status}")
    return response.json()["choices"][0]["message"]["content"]


def judge_items(session: Session, key, criteria: Criteria, version: ModelVersion) -> dict[str, Any]:
    """The judge's signed scores on each of the version's items it has not scored yet
    (failures are counted, never fatal). The caller has committed what it wrote before: the
    judge may be this service's own gateway, which writes its audit entries meanwhile."""
    judge = criteria.judge
    if not judge.url:
        return {"scored": 0, "errors": [], "configured": False}
    judged = set(
        session.exec(
            select(ReviewScore.item_id)
            .join(ReviewItem, ReviewItem.id == ReviewScore.item_id)
            .where(ReviewItem.version_id == version.id, ReviewScore.source == JUDGE)
        )
    )
    items = session.exec(
        select(ReviewItem).where(ReviewItem.version_id == version.id).order_by(ReviewItem.id)
    ).all()
    verdicts, errors = [], []
    for item in items:
        if item.id in judged:
            continue
        try:
            answer = ask_judge(judge, judge_messages(criteria, item))
            verdicts.append((item, parse_verdict(answer, criteria.names())))
        except Exception as exc:  # unreachable, refused, or an answer without scores
            errors.append(f"{item.conversation}: {type(exc).__name__}: {exc}"[:200])
    reviewer = judge.model or judge.url
    for item, verdict in verdicts:
        for criterion, score in verdict.items():
            session.add(_signed_score(key, item, JUDGE, reviewer, criterion, score, ""))
    session.flush()
    return {"scored": len(verdicts), "errors": errors[:20], "configured": True}


# --- agreement and the gate -----------------------------------------------------------------


def agreement(session: Session, domain: Domain, criteria: Criteria) -> dict[str, Any]:
    """The judge's agreement with the domain's experts: quadratic weighted kappa over every
    (item, criterion, expert) with a judge score on the same item and criterion."""
    rows = session.exec(
        select(ReviewScore, ReviewItem.uid)
        .join(ReviewItem, ReviewItem.id == ReviewScore.item_id)
        .join(ModelVersion, ModelVersion.id == ReviewItem.version_id)
        .join(ModelFamily, ModelFamily.id == ModelVersion.family_id)
        .where(ModelFamily.domain_id == domain.id)
    ).all()
    judged: dict[tuple[str, str], list[int]] = defaultdict(list)
    experts: list[tuple[str, str, int]] = []
    for score, item_uid in rows:
        if score.source == JUDGE:
            judged[(item_uid, score.criterion)].append(score.score)
        else:
            experts.append((item_uid, score.criterion, score.score))
    pairs = [
        (expert, round(sum(judged[(item, c)]) / len(judged[(item, c)])))
        for item, c, expert in experts
        if (item, c) in judged
    ]
    items = len({item for item, c, _ in experts if (item, c) in judged})
    kappa = None
    if pairs:
        from sklearn.metrics import cohen_kappa_score

        a, b = zip(*pairs, strict=True)
        if len(set(a) | set(b)) > 1:
            kappa = float(cohen_kappa_score(a, b, labels=list(SCALE), weights="quadratic"))
        else:
            kappa = 1.0  # every score the same on both sides: full agreement
    judge = criteria.judge
    trusted = kappa is not None and kappa >= judge.min_kappa and items >= judge.min_items
    return {
        "kappa": None if kappa is None else round(kappa, 4),
        "items": items,
        "pairs": len(pairs),
        "min_kappa": judge.min_kappa,
        "min_items": judge.min_items,
        "trusted": trusted,
    }


def means(session: Session, version: ModelVersion, source: str) -> dict[str, float]:
    """The mean score per criterion on the version's items, by experts or by the judge."""
    rows = session.exec(
        select(ReviewScore)
        .join(ReviewItem, ReviewItem.id == ReviewScore.item_id)
        .where(ReviewItem.version_id == version.id, ReviewScore.source == source)
    ).all()
    found: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        found[row.criterion].append(row.score)
    return {k: round(sum(v) / len(v), 3) for k, v in sorted(found.items())}


def judge_reasons(criteria: Criteria, judged: dict[str, float]) -> list[str]:
    """Why the judge's means fail the version (asked only when it gates and is trusted)."""
    judge = criteria.judge
    return [
        f"judge: {name} scores {judged[name]:.2f} on average < {judge.min_score:.2f}"
        for name in criteria.names()
        if name in judged and judged[name] < judge.min_score
    ]


def review_step(
    session: Session,
    key,
    domain: Domain,
    version: ModelVersion,
    criteria: Criteria,
    answer,
    mask,
    settle: Callable[[], None],
) -> tuple[dict[str, Any], list[str]]:
    """Sample the version's answers, have the judge score them, and say whether the judge's
    scores gate: (the gate record's `review` section, the reasons to fail)."""
    items = sample(session, version, criteria, answer, mask)
    settle()  # the entry point commits the sample: nothing is held while the judge is asked
    judged = judge_items(session, key, criteria, version)
    trust = agreement(session, domain, criteria)
    scores = means(session, version, JUDGE)
    gating = criteria.judge.gate and trust["trusted"]
    reasons = judge_reasons(criteria, scores) if gating else []
    mode = "gating" if gating else "advisory"
    return (
        {
            "items": len(items),
            "criteria": criteria.names(),
            "judge": {**judged, "model": criteria.judge.model, "mode": mode, "means": scores},
            "agreement": trust,
        },
        reasons,
    )


def item_read(
    session: Session, item: ReviewItem, scores: list[ReviewScore] | None = None
) -> dict[str, Any]:
    """An item with its scores (read here unless the caller read them with others)."""
    if scores is None:
        scores = list(
            session.exec(
                select(ReviewScore).where(ReviewScore.item_id == item.id).order_by(ReviewScore.id)
            )
        )
    return {
        "uid": item.uid,
        "conversation": item.conversation,
        "transcript": item.transcript,
        "scores": [
            {
                "source": s.source,
                "reviewer": s.reviewer,
                "criterion": s.criterion,
                "score": s.score,
                "comment": s.comment,
                "time": format_time(s.created_at),
                "digest": s.digest,
                "signature": s.signature,
                "key_id": s.key_id,
            }
            for s in scores
        ],
    }


def version_reviews(
    session: Session, domain: Domain, version: ModelVersion, criteria: Criteria | None
) -> dict[str, Any]:
    """A version's review items with every score, the means per criterion by the experts and
    by the judge, and the judge's agreement on the domain."""
    items = session.exec(
        select(ReviewItem).where(ReviewItem.version_id == version.id).order_by(ReviewItem.id)
    ).all()
    scores: dict[int, list[ReviewScore]] = defaultdict(list)
    for row in session.exec(
        select(ReviewScore)
        .join(ReviewItem, ReviewItem.id == ReviewScore.item_id)
        .where(ReviewItem.version_id == version.id)
        .order_by(ReviewScore.id)
    ):
        scores[row.item_id].append(row)
    return {
        "criteria": [c.model_dump() for c in criteria.criteria] if criteria else [],
        "items": [item_read(session, i, scores[i.id]) for i in items],
        "expert_means": means(session, version, EXPERT),
        "judge_means": means(session, version, JUDGE),
        "agreement": agreement(session, domain, criteria) if criteria else None,
    }
