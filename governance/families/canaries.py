"""Canaries for the memorization test (the Secret Sharer method, Carlini et al., 2019).

When a training job is created, the service draws a few synthetic secrets: a fixed-format
number (shaped like an identification number) behind a unique prefix. They are recorded in
the job, never taken from real data, and inserted into the sanitized training set at
positions drawn from the job's id, so every attempt of the job trains on the same bundle.
After training, the worker ranks each canary's likelihood among random secrets of the same
format (`trainers.exposure`); the evaluation gate refuses a version whose mean exposure
exceeds the domain's threshold. A configuration that memorizes a canary seen once would
memorize a personal value that the scanner missed just as well.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from typing import Any

from governance.domains.settings import Memorization
from trainers.exposure import draw_secret

# `d` is a random digit; anything else is literal. Nine digits: 10^9 possible secrets.
SECRET_FORMAT = "ddd-dd-dddd"  # noqa: S105 (a format, not a secret)


def draw(settings: Memorization) -> dict[str, Any]:
    """The canaries of one job (stored in its params), or {} when the test is off."""
    if not settings.canaries:
        return {}
    rng = secrets.SystemRandom()
    return {
        "format": SECRET_FORMAT,
        "repetitions": settings.repetitions,
        "candidates": settings.candidates,
        "canaries": [
            {
                "prefix": f"Taxpayer file {secrets.token_hex(3)}: the identification number is ",
                "secret": draw_secret(rng, SECRET_FORMAT),
            }
            for _ in range(settings.canaries)
        ],
    }


def placements(plan: dict[str, Any], job_uid: str, total: int) -> dict[int, dict[str, str]]:
    """Where each canary copy lands among `total` training records: {position in the final
    sequence: record}. Every copy is inserted at a position drawn from the job's id (stable
    across attempts), after the copies before it; only the copies' positions are kept, so a
    bundle streams its records past them without holding them."""
    if not plan:
        return {}
    # Positions, not secrets: a seeded generator, so that every attempt gets the same bundle.
    rng = random.Random(hashlib.sha256(f"canaries:{job_uid}".encode()).digest())  # noqa: S311
    placed: list[tuple[int, dict[str, str]]] = []
    length = total
    for canary in plan["canaries"]:
        for _ in range(int(plan["repetitions"])):
            at = rng.randint(0, length)
            placed = [(p + 1 if p >= at else p, r) for p, r in placed]
            placed.append((at, {"text": canary["prefix"] + canary["secret"]}))
            length += 1
    return dict(placed)


def insert(train: list[dict[str, Any]], plan: dict[str, Any], job_uid: str) -> list[dict]:
    """The training records with every canary inserted `repetitions` times (`placements`)."""
    placed = placements(plan, job_uid, len(train))
    records, source = [], iter(train)
    for position in range(len(train) + len(placed)):
        records.append(placed[position] if position in placed else next(source))
    return records
