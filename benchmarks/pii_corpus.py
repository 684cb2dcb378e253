"""An evaluation corpus of tax-support tickets, chats and notes with labelled PII.

Written apart from the scanner: it imports nothing of `governance.pii` and builds its values
and sentences its own way (Faker for raw values in several locales, then the many ways people
write them: read out, grouped, broken over lines, lower case, obfuscated). Each record is
`{"text", "spans": [[start, end, TYPE, FORM]]}`; the form names how the value was written, so
recall can be read per type and per form. Clean tax sentences (forms, lines, amounts, the
IRS's own phone numbers, e-file IDs) make up much of every record, so precision is measured on
the text that costs training data when over-redacted.
"""

from __future__ import annotations

import random
import string
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from faker import Faker

ONES = "zero one two three four five six seven eight nine".split()
LOCALES = ["en_US", "en_US", "en_US", "es_MX", "en_NG", "vi_VN", "en_IN", "en_GB", "fr_FR"]
GREETINGS = ["Hi,", "Hello team,", "hey", "Good morning,", "To whom it may concern:", ""]
CLOSINGS = ["Thanks,", "Regards,", "Best,", "thank you", "Sincerely,", "cheers"]
CLEAN = [
    "I'm not sure whether the 1099-K from my side gig goes on Schedule C line 1.",
    "The IRS letter says I owe $1,284.50 for tax year 2023, is that right?",
    "Do I report the HSA distribution from Form 1099-SA on Form 8889, line 14a?",
    "My W-2 box 12 shows code DD with $7,412.00, does that count as income?",
    "Call the IRS at 1-800-829-1040 if the transcript still shows nothing.",
    "Your e-file submission ID 30012420241234567890 was accepted on April 3.",
    "The standard deduction for 2025 is $15,000 for single filers.",
    "Line 11 AGI 143,075 and line 15 taxable income 128,075.",
    "Rev. Proc. 2023-34 has the inflation adjustments you asked about.",
    "See Pub. 501 and Publication 17 for dependents and filing status.",
    "We moved from Ohio to Texas in June, do we file part-year returns?",
    "Bill payments for the rental are on Schedule E, not Schedule A.",
    "Is the home office deduction on Form 8829 limited to $1,500 under the simplified method?",
    "My son started college in 2024; can I take the American opportunity credit?",
    "The amended return (Form 1040-X) for 2022 is still processing after 16 weeks.",
    "Estimated payments of $2,500 were made each quarter via IRS Direct Pay.",
    "Our LLC elected S-corp status on Form 2553 effective January 1, 2025.",
    "The K-1 from the partnership shows $18,230 in box 1 ordinary income.",
    "Where's My Refund says the return is being processed, reference code 1121.",
    "For the IRA, the 2025 contribution limit is $7,000 plus $1,000 catch-up.",
    "Madrid office reimbursements are in euros; convert at the yearly average rate.",
    "The German pension is reported on Form 8938 if over the threshold.",
    "Taxpayer Advocate Service: 1-877-777-4778, in case the delay continues.",
    "Box 2a shows $0.00 of federal income tax withheld on the 1099-R.",
    "Mileage rate is 70 cents per mile for 2025 business use.",
]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _luhn_complete(prefix: str) -> str:
    for last in string.digits:
        total = 0
        for i, ch in enumerate(reversed(prefix + last)):
            v = int(ch) * (2 if i % 2 else 1)
            total += v - 9 if v > 9 else v
        if total % 10 == 0:
            return prefix + last
    raise AssertionError


def _aba(rng: random.Random) -> str:
    while True:
        d = _digits(rng, 8)
        for last in string.digits:
            n = d + last
            weights = [3, 7, 1] * 3
            if (
                sum(int(c) * w for c, w in zip(n, weights, strict=True)) % 10 == 0
                and n[0] in "0123"
            ):
                return n


# Each writer returns (text with {v} marking the value, value, form).
Writer = Callable[[random.Random, Faker], tuple[str, str, str]]


def ssn(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    raw = f"{rng.randint(100, 665):03d}{rng.randint(10, 99)}{rng.randint(1000, 9999)}"
    a, b, c = raw[:3], raw[3:5], raw[5:]
    form = rng.choice(["dashed", "plain", "spaced", "mixed", "spelled", "linebreak", "dotted"])
    value = {
        "dashed": f"{a}-{b}-{c}",
        "plain": raw,
        "spaced": f"{a} {b} {c}",
        "mixed": f"{a} {b}-{c}",
        "spelled": " ".join(ONES[int(x)] for x in raw),
        "linebreak": f"{a}-{b}-\n{c}",
        "dotted": f"{a}.{b}.{c}",
    }[form]
    cue = rng.choice(["my SSN is", "social security number:", "SSN", "ss# ", "my social is"])
    return f"{cue} {{v}}", value, form


def itin(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    raw = f"9{rng.randint(10, 99)}{rng.choice([70, 71, 78, 81, 88, 90, 92, 94, 99])}{rng.randint(1000, 9999)}"
    form = rng.choice(["dashed", "plain"])
    value = f"{raw[:3]}-{raw[3:5]}-{raw[5:]}" if form == "dashed" else raw
    return f"{rng.choice(['ITIN', 'my itin is', 'spouse ITIN'])} {{v}}", value, form


def ein(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    raw = f"{rng.choice(['12', '27', '36', '45', '84', '91', '20', '65'])}{_digits(rng, 7)}"
    form = rng.choice(["dashed", "plain", "spaced"])
    value = {"dashed": f"{raw[:2]}-{raw[2:]}", "plain": raw, "spaced": f"{raw[:2]} {raw[2:]}"}[form]
    return f"{rng.choice(['our EIN is', 'EIN:', 'federal tax id (EIN)', 'ein'])} {{v}}", value, form


def account(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    n = rng.choice([10, 12, 12, 14, 9, 11])
    raw = _digits(rng, n)
    form = rng.choice(["plain", "grouped", "dashed"])
    if form == "grouped":
        value = " ".join(raw[i : i + 4] for i in range(0, n, 4))
    elif form == "dashed":
        value = "-".join(raw[i : i + 4] for i in range(0, n, 4))
    else:
        value = raw
    cue = rng.choice(["checking account", "acct #", "savings acct", "account number", "a/c"])
    return f"{cue} {{v}}", value, form


def routing(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    value = _aba(rng)
    form = rng.choice(["cued", "bare"])
    if form == "bare":
        return "direct deposit to {v} please", value, form
    return f"{rng.choice(['routing number', 'routing #', 'ABA'])} {{v}}", value, form


def card(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    raw = _luhn_complete(rng.choice(["4", "51", "55", "37", "6011"]) + _digits(rng, 14))[:16]
    raw = _luhn_complete(raw[:15])
    groups = [raw[i : i + 4] for i in range(0, 16, 4)]
    form = rng.choice(["spaced", "dashed", "dots", "plain", "linebreak"])
    value = {
        "spaced": " ".join(groups),
        "dashed": "-".join(groups),
        "dots": ".".join(groups),
        "plain": raw,
        "linebreak": " ".join(groups[:2]) + "\n" + " ".join(groups[2:]),
    }[form]
    return (
        f"{rng.choice(['paid with card', 'visa', 'card number', 'charged to'])} {{v}}",
        value,
        form,
    )


def iban(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    value = Faker(rng.choice(["de_DE", "en_GB", "fr_FR", "es_ES", "nl_NL"])).iban()
    form = rng.choice(["compact", "grouped", "lower"])
    if form == "grouped":
        value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    elif form == "lower":
        value = " ".join(value[i : i + 4] for i in range(0, len(value), 4)).lower()
    return f"{rng.choice(['IBAN', 'my iban is', 'transfer to IBAN'])} {{v}}", value, form


def email(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    user = fake.user_name()
    host = rng.choice(["gmail", "yahoo", "outlook", "protonmail", "icloud"])
    form = rng.choice(["plain", "plain", "at-dot", "bracket"])
    value = {
        "plain": f"{user}@{host}.com",
        "at-dot": f"{user} at {host} dot com",
        "bracket": f"{user}[at]{host}[dot]com",
    }[form]
    return (
        f"{rng.choice(['email me at', 'my email is', 'reach me via', 'send to'])} {{v}}",
        value,
        form,
    )


def phone(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    area, mid, last = rng.randint(201, 989), rng.randint(201, 999), rng.randint(1000, 9999)
    form = rng.choice(["paren", "dashed", "dots", "plain", "spelled", "intl"])
    value = {
        "paren": f"({area}) {mid}-{last}",
        "dashed": f"{area}-{mid}-{last}",
        "dots": f"{area}.{mid}.{last}",
        "plain": f"{area}{mid}{last}",
        "spelled": " ".join(ONES[int(x)] for x in f"{area}{mid}{last}"),
        "intl": f"+1 {area} {mid} {last}",
    }[form]
    return f"{rng.choice(['call me at', 'my cell is', 'phone:', 'text me on'])} {{v}}", value, form


MONTHS = "January February March April May June July August September October November December"


def dob(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    d = fake.date_of_birth(minimum_age=18, maximum_age=90)
    month = MONTHS.split()[d.month - 1]
    form = rng.choice(["slash", "iso", "long", "dmy-abbrev", "ordinal", "lower"])
    value = {
        "slash": d.strftime("%m/%d/%Y"),
        "iso": d.isoformat(),
        "long": f"{month} {d.day}, {d.year}",
        "dmy-abbrev": f"{d.day:02d}-{month[:3]}-{d.year}",
        "ordinal": f"{d.day}{'th' if 4 <= d.day <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d.day % 10, 'th')} of {month.lower()} {d.year}",
        "lower": f"{month.lower()} {d.day}, {d.year}",
    }[form]
    return (
        f"{rng.choice(['born', 'DOB', 'date of birth:', 'born on', 'his birthday is'])} {{v}}",
        value,
        form,
    )


def address(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    us = Faker("en_US")
    form = rng.choice(["street", "street", "po-box", "rural", "spanish", "multiline"])
    if form == "street":
        value = f"{us.street_address()}, {us.city()}, {us.state_abbr()} {us.zipcode()}"
    elif form == "po-box":
        value = f"{rng.choice(['PO Box', 'P.O. Box', 'POB'])} {rng.randint(10, 9999)}, {us.city()}, {us.state_abbr()} {us.zipcode()}"
    elif form == "rural":
        value = f"{rng.choice(['RR', 'Rural Route', 'HC'])} {rng.randint(1, 80)} Box {rng.randint(1, 2999)}, {us.city()} {us.state_abbr()}"
    elif form == "spanish":
        value = f"{rng.randint(10, 9999)} {rng.choice(['Paseo del Norte', 'Calle Ocho', 'Camino Real', 'Avenida Juarez', 'Via Verde'])}, {us.city()}, {rng.choice(['NM', 'AZ', 'TX', 'CA'])} {us.zipcode()}"
    else:
        value = f"{us.street_address()}\n{us.city()}, {us.state_abbr()} {us.zipcode()}"
    return (
        f"{rng.choice(['I live at', 'mail it to', 'new address:', 'we moved to'])} {{v}}",
        value,
        form,
    )


def person(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    name = f"{fake.first_name()} {fake.last_name()}"
    form = rng.choice(["title", "title", "lower", "upper", "word-names", "signature"])
    if form == "lower":
        name = name.lower()
    elif form == "upper":
        name = name.upper()
    elif form == "word-names":
        name = rng.choice(
            ["Bill Price", "Hope Cash", "Chase Young", "Faith Baker", "Grant Rice", "Will Hunter"]
        )
    if form == "signature":
        return f"{rng.choice(CLOSINGS)}\n{{v}}", name, form
    cue = rng.choice(
        ["my client", "account holder:", "my wife", "my boss", "From:", "spouse is", "Dear", "I am"]
    )
    return f"{cue} {{v}}", name, form


def passport(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    form = rng.choice(["digits", "letter"])
    value = _digits(rng, 9) if form == "digits" else rng.choice("ACEXPN") + _digits(rng, 8)
    return f"{rng.choice(['passport number', 'passport no.', 'my passport #'])} {{v}}", value, form


STATE_DL = [
    lambda r: r.choice(string.ascii_uppercase) + _digits(r, 7),  # CA
    lambda r: (
        f"{r.choice(string.ascii_uppercase)}{_digits(r, 3)}-{_digits(r, 3)}-{_digits(r, 2)}-{_digits(r, 3)}-{_digits(r, 1)}"
    ),  # FL
    lambda r: f"{_digits(r, 3)} {_digits(r, 3)} {_digits(r, 3)}",  # NY
    lambda r: _digits(r, 8),  # TX
    lambda r: r.choice(string.ascii_uppercase) + _digits(r, 12),  # MI, MN
    lambda r: f"{_digits(r, 2)}-{_digits(r, 3)}-{_digits(r, 4)}",  # CO
]


def licence(rng: random.Random, fake: Faker) -> tuple[str, str, str]:
    index = rng.randrange(len(STATE_DL))
    value = STATE_DL[index](rng)
    cue = rng.choice(["driver's license", "DL#", "drivers license number", "license no."])
    return f"{cue} {{v}}", value, f"state-{index}"


WRITERS: dict[str, Writer] = {
    "US_SSN": ssn,
    "US_ITIN": itin,
    "US_EIN": ein,
    "US_BANK_NUMBER": account,
    "ABA_ROUTING_NUMBER": routing,
    "CREDIT_CARD": card,
    "IBAN_CODE": iban,
    "EMAIL_ADDRESS": email,
    "PHONE_NUMBER": phone,
    "DATE_OF_BIRTH": dob,
    "STREET_ADDRESS": address,
    "PERSON": person,
    "PASSPORT": passport,
    "US_DRIVER_LICENSE": licence,
}


def generate(count: int, seed: int = 41) -> Iterator[dict[str, Any]]:
    """Yield support records with labelled PII spans."""
    rng = random.Random(seed)
    fakers = {loc: Faker(loc) for loc in set(LOCALES)}
    for loc, fake in fakers.items():
        # A stable hash: str hashes change from process to process.
        fake.seed_instance(seed + zlib.crc32(loc.encode()) % 1000)
    for _ in range(count):
        fake = fakers[rng.choice(LOCALES)]
        kind = rng.choice(["ticket", "chat", "note"])
        pieces: list[tuple[str, str | None, str | None, str | None]] = []
        n_pii = rng.choice([0, 0, 1, 1, 2, 3])
        if kind == "chat":
            pieces.append(
                (rng.choice(["Customer: ", "user> ", "[10:42] client: "]), None, None, None)
            )
        else:
            pieces.append((rng.choice(GREETINGS) + " ", None, None, None))
        sentences = rng.sample(CLEAN, rng.randint(1, 3))
        for sentence in sentences:
            pieces.append((sentence + " ", None, None, None))
        for _ in range(n_pii):
            entity = rng.choice(list(WRITERS))
            template, value, form = WRITERS[entity](rng, fake)
            before, after = template.split("{v}")
            pieces.append((before, None, None, None))
            pieces.append((value, value, entity, form))
            pieces.append(
                (after + rng.choice([". ", ", thanks. ", "\n", " - ", ". "]), None, None, None)
            )
        if kind == "chat":
            pieces.append(
                (rng.choice(["\nAgent: ", "\nbot> "]) + rng.choice(CLEAN), None, None, None)
            )
        text, spans = "", []
        for chunk, value, entity, form in pieces:
            if value is not None:
                spans.append([len(text), len(text) + len(value), entity, form])
            text += chunk
        yield {"text": text, "spans": spans}
