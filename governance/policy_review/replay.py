"""Replay recorded authorization decisions against a proposed policy: the impact of a change.

Every authorization decision the service makes is in the audit log with its question (the
principal asked about, the domain, the object and the action) and its answer (`allow` or
`deny`). A replay reads the decisions of a window, asks each question again of two compiled
policies, the one in force (`base`) and the proposed one (`head`), and reports the questions
whose answer would change, grouped by direction, principal, domain, action and object kind,
with the first examples of each group and the rule that decides each side.

What it compares is base against head, not the recorded answer against head: a decision
recorded under an older policy may differ from what the policy in force answers today, and
that difference is not the proposed change's doing. Such entries are counted apart (`drift`).

Entries that retention pruned keep their place in the tree but not their question: they are
counted as unavailable, never skipped in silence.

Speed: a question is decided once per policy however often it was asked (the log repeats the
same questions), and the log is read in batches of plain tuples, columns only, without the
ORM. See `benchmarks/replay.py` for the figure at 10^6 decisions.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from governance.audit.models import AuditEntry
from governance.authz.policy import PolicySet

# Examples kept per group of changed decisions.
EXAMPLES = 3
# Groups listed in the text and Markdown reports (the JSON holds all of them).
SHOWN_GROUPS = 50
DEFAULT_SINCE = "90d"
ALLOW_TO_DENY = "allow->deny"
DENY_TO_ALLOW = "deny->allow"


def parse_since(value: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """`90d`, `12w`, `24h` or an ISO date/time -> the start of the window (UTC); None for all."""
    if value is None or value in ("", "all"):
        return None
    now = now or dt.datetime.now(dt.UTC)
    units = {"d": "days", "w": "weeks", "h": "hours"}
    text = value.strip()
    if text[-1:] in units and text[:-1].isdigit():
        amount = int(text[:-1])
        if amount > 36500:
            raise ValueError(f"since {value!r} reaches back more than a hundred years")
        return now - dt.timedelta(**{units[text[-1]]: amount})
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"since {value!r} is neither a duration (90d, 12w, 24h) nor an ISO date"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Recorded:
    """One recorded decision: its place in the log and its question and answer."""

    seq: int
    principal: str
    domain: str
    obj: str
    action: str
    allowed: bool


def read_decisions(
    connection: Connection,
    since: dt.datetime | None = None,
    domains: Collection[str] | None = None,
    batch: int = 20000,
    counts: Counter | None = None,
) -> Iterator[Recorded]:
    """The authorization decisions of the log in order, pruned ones counted in `counts`.

    Decisions are the entries with answer `allow` or `deny` and a domain: the request guard's,
    `POST /api/v1/authorize`'s and AuthZEN's (events of the service such as a listing are
    logged without a domain). A pruned entry keeps its time, domain, action and answer but
    not its principal or object: it is counted as unavailable.
    """
    table = AuditEntry.__table__
    columns = (
        table.c.seq,
        table.c.principal,
        table.c.domain,
        table.c.object,
        table.c.action,
        table.c.decision,
        table.c.pruned_at.is_not(None),
    )
    where = [table.c.decision.in_(("allow", "deny")), table.c.domain.is_not(None)]
    if since is not None:
        where.append(table.c.time >= since)
    if domains is not None:
        where.append(table.c.domain.in_(sorted(domains)))
    after = 0
    while True:
        rows = connection.execute(
            sa.select(*columns)
            .where(*where, table.c.seq > after)
            .order_by(table.c.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        for seq, principal, dom, obj, action, decision, pruned in rows:
            if pruned:
                if counts is not None:
                    counts["unavailable"] += 1
                continue
            yield Recorded(seq, principal, dom, obj, action, decision == "allow")
        after = rows[-1][0]


@dataclass
class Group:
    """Changed decisions that share direction, principal, domain, action and object kind."""

    direction: str
    principal: str
    domain: str
    action: str
    kind: str
    count: int = 0
    base_rule: list[str] | None = None
    head_rule: list[str] | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "principal": self.principal,
            "domain": self.domain,
            "action": self.action,
            "object_kind": self.kind,
            "count": self.count,
            "base_rule": self.base_rule,
            "head_rule": self.head_rule,
            "examples": self.examples,
        }


def _rule_text(rule: list[str] | None) -> str:
    return "p, " + ", ".join(rule) if rule else "no rule allows it (deny by default)"


@dataclass
class ReplayReport:
    """What would change, and how much of the window could be replayed."""

    base_hash: str
    head_hash: str
    since: str | None
    domain: str | None
    # The domains replayed when they are not all of them (the caller's readable ones).
    domains: list[str] | None = None
    examined: int = 0
    unavailable: int = 0
    distinct_questions: int = 0
    drift: int = 0
    groups: list[Group] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def allow_to_deny(self) -> int:
        return sum(g.count for g in self.groups if g.direction == ALLOW_TO_DENY)

    @property
    def deny_to_allow(self) -> int:
        return sum(g.count for g in self.groups if g.direction == DENY_TO_ALLOW)

    @property
    def changed(self) -> bool:
        return bool(self.groups)

    def totals(self) -> dict[str, Any]:
        by: dict[str, Counter] = {
            "principal": Counter(),
            "domain": Counter(),
            "action": Counter(),
            "object_kind": Counter(),
        }
        for group in self.groups:
            for key, value in (
                ("principal", group.principal),
                ("domain", group.domain),
                ("action", group.action),
                ("object_kind", group.kind),
            ):
                by[key][f"{value} {group.direction}"] += group.count
        return {key: dict(counter.most_common()) for key, counter in by.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "base_policy": self.base_hash,
            "head_policy": self.head_hash,
            "since": self.since,
            "domain": self.domain,
            "domains": self.domains,
            "examined": self.examined,
            "unavailable": self.unavailable,
            "distinct_questions": self.distinct_questions,
            "drift": self.drift,
            "allow_to_deny": self.allow_to_deny,
            "deny_to_allow": self.deny_to_allow,
            "changed": self.changed,
            "by": self.totals(),
            "groups": [g.as_dict() for g in self.groups],
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        window = f"since {self.since}" if self.since else "over the whole log"
        scope = (
            f" in domain {self.domain}"
            if self.domain
            else f" in {len(self.domains)} domain(s) you may read"
            if self.domains is not None
            else ""
        )
        return (
            f"replayed {self.examined} recorded decision(s) {window}{scope} "
            f"({self.distinct_questions} distinct question(s); {self.unavailable} pruned by "
            f"retention and unavailable): {self.allow_to_deny} allow->deny, "
            f"{self.deny_to_allow} deny->allow"
        )

    def as_text(self) -> str:
        lines = [
            f"policy in force {self.base_hash[:16]} -> proposed {self.head_hash[:16]}",
            self.summary(),
        ]
        if self.drift:
            lines.append(
                f"{self.drift} recorded decision(s) differ from what the policy in force "
                "answers today (decided under an earlier policy); not counted as changes"
            )
        for group in self.groups[:SHOWN_GROUPS]:
            lines.append(
                f"{group.direction}  {group.count:>7}  {group.principal}  {group.action} "
                f"{group.kind} in {group.domain}"
            )
            lines.append(f"    before: {_rule_text(group.base_rule)}")
            lines.append(f"    after:  {_rule_text(group.head_rule)}")
            for example in group.examples:
                lines.append(f"    e.g. entry {example['seq']}: {example['object']}")
        if len(self.groups) > SHOWN_GROUPS:
            lines.append(
                f"... and {len(self.groups) - SHOWN_GROUPS} more group(s) (see --format json)"
            )
        return "\n".join(lines)

    def as_markdown(self) -> str:
        verdict = (
            "**No recorded decision would change.**"
            if not self.changed
            else f"**{self.allow_to_deny} decision(s) would change from allow to deny and "
            f"{self.deny_to_allow} from deny to allow.**"
        )
        lines = [
            "### Policy replay",
            "",
            f"Policy in force `{self.base_hash[:16]}` → proposed `{self.head_hash[:16]}`.",
            "",
            self.summary()[0].upper() + self.summary()[1:] + ".",
            "",
            verdict,
        ]
        if self.drift:
            lines += [
                "",
                f"{self.drift} recorded decision(s) were made under an earlier policy and "
                "differ from today's answer; they are not counted as changes.",
            ]
        if self.groups:
            lines += [
                "",
                "| change | decisions | principal | action | object | domain | before | after |",
                "|---|---:|---|---|---|---|---|---|",
            ]
            for group in self.groups[:SHOWN_GROUPS]:
                lines.append(
                    f"| {group.direction} | {group.count} | `{group.principal}` | "
                    f"{group.action} | {group.kind} | {group.domain} | "
                    f"{_markdown_rule(group.base_rule)} | {_markdown_rule(group.head_rule)} |"
                )
            if len(self.groups) > SHOWN_GROUPS:
                lines.append(f"\n… and {len(self.groups) - SHOWN_GROUPS} more group(s).")
        return "\n".join(lines) + "\n"


def _markdown_rule(rule: list[str] | None) -> str:
    return f"`p, {', '.join(rule)}`" if rule else "deny by default"


def replay(
    base: PolicySet,
    head: PolicySet,
    decisions: Iterable[Recorded],
    *,
    since: str | None = None,
    domain: str | None = None,
) -> ReplayReport:
    """Ask every recorded question of both policies; report the answers that differ."""
    import time

    started = time.perf_counter()
    report = ReplayReport(base.hash, head.hash, since, domain)
    base_first = base.compiled.first_rule
    head_first = head.compiled.first_rule
    # question -> (base rule index, head rule index); each asked once per policy.
    answers: dict[tuple[str, str, str, str], tuple[int | None, int | None]] = {}
    groups: dict[tuple[str, str, str, str, str], Group] = {}
    drift = 0
    examined = 0
    for entry in decisions:
        examined += 1
        question = (entry.principal, entry.domain, entry.obj, entry.action)
        answer = answers.get(question)
        if answer is None:
            answer = (base_first(*question), head_first(*question))
            answers[question] = answer
        before = answer[0] is not None
        if before != entry.allowed:
            drift += 1
        after = answer[1] is not None
        if before == after:
            continue
        direction = ALLOW_TO_DENY if before else DENY_TO_ALLOW
        kind = entry.obj.split("/", 1)[0]
        key = (direction, entry.principal, entry.domain, entry.action, kind)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(
                direction,
                entry.principal,
                entry.domain,
                entry.action,
                kind,
                base_rule=None if answer[0] is None else list(base.rules[answer[0]]),
                head_rule=None if answer[1] is None else list(head.rules[answer[1]]),
            )
        group.count += 1
        if len(group.examples) < EXAMPLES:
            group.examples.append(
                {
                    "seq": entry.seq,
                    "object": entry.obj,
                    "recorded": "allow" if entry.allowed else "deny",
                }
            )
    report.examined = examined
    report.distinct_questions = len(answers)
    report.drift = drift
    # Largest groups first; ties in a fixed order, so the same log gives the same report.
    report.groups = sorted(
        groups.values(),
        key=lambda g: (-g.count, g.direction, g.principal, g.domain, g.action, g.kind),
    )
    report.seconds = time.perf_counter() - started
    return report


def replay_log(
    connection: Connection,
    base: PolicySet,
    head: PolicySet,
    *,
    since: str | None = DEFAULT_SINCE,
    domain: str | None = None,
    domains: Collection[str] | None = None,
) -> ReplayReport:
    """Replay the log's decisions of the window (reading included in `seconds`), of one
    domain, of some domains (one pass over the log), or of all of them."""
    import time

    started = time.perf_counter()
    counts: Counter = Counter()
    scope = [domain] if domain is not None else domains
    decisions = read_decisions(connection, parse_since(since), scope, counts=counts)
    report = replay(base, head, decisions, since=since, domain=domain)
    if domain is None and domains is not None:
        report.domains = sorted(domains)
    report.unavailable = counts["unavailable"]
    report.seconds = time.perf_counter() - started
    return report


def report_json(report: ReplayReport) -> str:
    return json.dumps(report.as_dict(), indent=2, sort_keys=True)
