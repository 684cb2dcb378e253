"""A labelled tax-domain corpus made with Faker: questions that carry PII, and PII-free tax
text full of forms, lines, amounts and years. For measuring the scanner, never for training."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from faker import Faker

TEMPLATES = [
    "Hi, I'm {PERSON}. My SSN is {US_SSN} and I need to amend my {year} Form 1040.",
    "Please send my refund to routing number {ABA_ROUTING_NUMBER}, checking account "
    "{US_BANK_NUMBER}.",
    "Our company EIN is {US_EIN}; do we file Form 941 quarterly?",
    "My ITIN is {US_ITIN}. Can I claim the child tax credit on line 19?",
    "{PERSON} was born on {DATE_OF_BIRTH}; can I claim them as a dependent for {year}?",
    "Mail the corrected W-2 to {STREET_ADDRESS}.",
    "You can reach me at {PHONE_NUMBER} or {EMAIL_ADDRESS} about my Schedule C.",
    "I paid the ${amount} estimated tax with card {CREDIT_CARD}, is that deductible?",
    "My spouse {PERSON} and I moved to {STREET_ADDRESS} in {year}; which state return do we file?",
    "Dear {PERSON}, your {year} return shows ${amount} on line 11. Call {PHONE_NUMBER}.",
    "Account holder {PERSON}, DOB {DATE_OF_BIRTH}, SSN {US_SSN}, wants direct deposit.",
    "The 1099-NEC from {PERSON} lists EIN {US_EIN} and ${amount} in box 1.",
]
CLEAN = [
    "What is the standard deduction for tax year {year}?",
    "Report ${amount} of interest on Schedule B, line 1, and carry it to Form 1040 line 2b.",
    "Is the home office deduction on Form 8829 limited to ${amount}?",
    "Enter W-2 box 12 code DD amounts on line 1a? No, they are informational.",
    "For {year}, the 401(k) limit is ${amount}; catch-up contributions go on Form 5329.",
    "Self-employment tax is 15.3% of net earnings from Schedule SE, line 3.",
    "Carry the loss from Form 8949 to Schedule D lines 1b and 8b for {year}.",
    "A 1099-K over ${amount} goes to Schedule C line 1; see the {year} instructions.",
]


def _value(fake: Faker, entity: str, rng: random.Random) -> str:
    if entity == "PERSON":
        return fake.name()
    if entity == "US_SSN":
        return fake.ssn()
    if entity == "US_ITIN":
        return (
            f"9{rng.randint(0, 99):02d}-{rng.choice([70, 75, 80, 85, 90, 92, 94])}-"
            f"{rng.randint(1000, 9999)}"
        )
    if entity == "US_EIN":
        return fake.ein()
    if entity == "ABA_ROUTING_NUMBER":
        return fake.aba()
    if entity == "US_BANK_NUMBER":
        return fake.bban() if rng.random() < 0.2 else str(rng.randint(10**7, 10**12))
    if entity == "STREET_ADDRESS":
        return fake.address().replace("\n", ", ")
    if entity == "PHONE_NUMBER":
        return rng.choice(["({}) {}-{}", "{}-{}-{}", "{}.{}.{}"]).format(
            rng.randint(201, 989), rng.randint(200, 999), rng.randint(1000, 9999)
        )
    if entity == "EMAIL_ADDRESS":
        return fake.email()
    if entity == "CREDIT_CARD":
        return fake.credit_card_number()
    if entity == "DATE_OF_BIRTH":
        born = fake.date_of_birth(minimum_age=1, maximum_age=90)
        return rng.choice([born.strftime("%m/%d/%Y"), born.strftime("%B %d, %Y")])
    raise ValueError(entity)


def generate(count: int, seed: int = 2026, clean_share: float = 0.3) -> Iterator[dict[str, Any]]:
    """Yield records {"text", "spans": [[start, end, TYPE]]}; the spans label the PII."""
    rng = random.Random(seed)  # noqa: S311 (reproducible test data, not secrets)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    for _ in range(count):
        template = rng.choice(CLEAN if rng.random() < clean_share else TEMPLATES)
        text, spans, position = "", [], 0
        for piece in _split(template):
            if piece.startswith("{") and piece.endswith("}"):
                name = piece[1:-1]
                if name == "year":
                    value = str(rng.randint(2019, 2026))
                elif name == "amount":
                    value = f"{rng.randint(100, 250000):,}"
                else:
                    value = _value(fake, name, rng)
                    spans.append([position, position + len(value), name])
                text += value
                position += len(value)
            else:
                text += piece
                position += len(piece)
        yield {"text": text, "spans": spans}


def _split(template: str) -> list[str]:
    parts, current = [], ""
    for char in template:
        if char == "{":
            parts.append(current)
            current = "{"
        elif char == "}":
            parts.append(current + "}")
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p]
