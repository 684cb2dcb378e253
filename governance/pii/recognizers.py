"""Recognizers tax data needs that Presidio lacks or misses, all offline.

Presidio's own serve for SSN, ITIN, phone, card, IBAN, IP, ABA routing (with its checksum),
driver's licence and bank numbers; the e-mail recognizer is replaced by one whose domain check
uses tldextract's bundled suffix list, because Presidio's reaches for the public-suffix list
over the network. URLs are not PII here and their recognizer (also networked) is not loaded.
"""

from __future__ import annotations

import functools
import re

import tldextract
from presidio_analyzer import (
    AnalysisExplanation,
    LocalRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerResult,
)
from presidio_analyzer.predefined_recognizers import EmailRecognizer

# tldextract with no suffix-list URLs and no cache reads the snapshot shipped in the package.
OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, checking the domain against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return _has_public_suffix(pattern_text)


@functools.lru_cache(maxsize=65536)
def _has_public_suffix(address: str) -> bool:
    return OFFLINE_TLD(address).fqdn != ""


# IRS campus prefixes that EINs may start with (IRS "How EINs are assigned").
EIN_PREFIXES = frozenset(
    f"{n:02d}"
    for n in [
        *range(1, 7),
        *range(10, 17),
        *range(20, 28),
        *range(30, 49),
        *range(50, 69),
        *range(71, 78),
        *range(80, 89),
        *range(90, 96),
        98,
        99,
    ]
)


class UsEinRecognizer(PatternRecognizer):
    """Employer identification numbers: NN-NNNNNNN with a valid IRS prefix."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="US_EIN",
            name="UsEinRecognizer",
            patterns=[
                Pattern("EIN (dashed)", r"\b\d{2}-\d{7}\b", 0.5),
                Pattern("EIN (digits)", r"\b\d{9}\b", 0.05),
            ],
            context=["ein", "employer", "identification", "fein", "tax id", "tin", "business"],
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        return pattern_text[:2] not in EIN_PREFIXES


class BankAccountRecognizer(PatternRecognizer):
    """Bank account numbers: 6 to 17 digits, only next to words that say so."""

    CONTEXT = re.compile(
        r"(?i)\b(?:account|acct|a/c|checking|savings|deposit|bank|routing|iban)\b[^.\n]{0,40}$"
    )

    def __init__(self) -> None:
        super().__init__(
            supported_entity="US_BANK_NUMBER",
            name="BankAccountRecognizer",
            patterns=[
                Pattern("digits", r"\b\d{6,17}\b", 0.6),
                Pattern("bank code and digits", r"\b[A-Z]{4}\d{10,20}\b", 0.6),
            ],
        )

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [r for r in results if self.CONTEXT.search(text[max(0, r.start - 60) : r.start])]


def _street_suffixes() -> str:
    """Street kinds: the common ones with their abbreviations, and every suffix Faker's US
    address data knows ("Ports", "Plains", "Gateway"), as one alternation."""
    from faker.providers.address.en_US import Provider

    common = (
        "Street St Avenue Ave Road Rd Boulevard Blvd Lane Ln Drive Dr Court Ct Way Place "
        "Pl Terrace Ter Parkway Pkwy Highway Hwy Circle Cir Square Sq Trail Trl Loop Row "
        "Alley Crescent Cres Close Grove Gardens Park Plaza Path Pike Point Ridge Run "
        "View Walk Heights Hills Mews Green Gate Hill Crossing Commons Estates Manor "
        "Meadows "
    ).split()
    words = sorted(set(common) | set(Provider.street_suffixes), key=len, reverse=True)
    return r"(?:" + "|".join(re.escape(w) for w in words) + r")\.?"


STREET_SUFFIX = _street_suffixes()
UNIT = r"(?:,?\s*(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#|Floor|Fl\.?)\s*[A-Z0-9-]+)?"
CITY_STATE_ZIP = r"(?:,?\s*[A-Z][A-Za-z .'-]{1,40},?\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"


# What may follow a street line: units, then up to three short lines or comma parts holding a
# city, a region, a country and a postal code.
UNIT_PART = (
    r"(?:[ \t]*,?[ \t]*(?:\n[ \t>]*)?(?i:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)[ \t]*[A-Z0-9-]+)*"
)
# A street-name word starts with a capital or a non-ASCII letter ("Koskikatu", "Þorsteinsgata",
# "Μεγάλη"); lower-case connectors may join them ("Rua do Arenque"). Plain lower-case English
# ("1040 for tax year 2025") is not a street.
CAP_WORD = r"[^\W\d_a-z][\w'.-]*"
CONNECTOR = (
    r"(?:do|da|de|del|der|den|la|le|van|von|di|du|dos|das|am|an|im|"
    # Lower-case street kinds and their abbreviations in other languages.
    r"u\.|ul\.|rkp\.|utca|útja|út|tér|kapu|gate|gata|gatan|terrasse|vej|vei|väg|str\.|"
    r"straße|strasse|tie|katu|sor|körút|fasor|rue|via|calle|rua|avenida)"
)
# The city, region, country and postal-code parts after a street line: capitalized words,
# numbers and codes, separated by commas or line breaks; plain lower-case words end it.
TAIL_TOKEN = r"(?:" + CAP_WORD + r"|\d{2,6}|\([^\W\d_][\w ]{0,15}\))"
TAIL_PART = (
    r"(?:[ \t]*(?:,|\n{1,2})[ \t>]*,?[ \t]*"
    + TAIL_TOKEN
    + r"(?:[ \t]+"
    + TAIL_TOKEN
    + r"){0,4}){0,4}"
)


class StreetAddressRecognizer(PatternRecognizer):
    """Street addresses, US and international: number and street (either order), units,
    then the city, region, country and postal-code lines that follow; PO and military boxes."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="STREET_ADDRESS",
            name="StreetAddressRecognizer",
            patterns=[
                Pattern(
                    "number street suffix",
                    r"\b\d{1,6}[A-Z]?\s+(?:[NSEW]\.?\s+|North\s+|South\s+|East\s+|West\s+)?"
                    r"(?:[A-Z0-9][\w'.-]*\s+){0,4}"
                    + STREET_SUFFIX
                    + r"\b(?:[ \t]+"
                    + CAP_WORD
                    + r"){0,2}"
                    + UNIT_PART
                    + TAIL_PART,
                    0.7,
                ),
                Pattern(
                    "number words number (international)",
                    r"\b\d{1,6}[ \t]+"
                    + CAP_WORD
                    + r"[ \t]+(?:(?:"
                    + CAP_WORD
                    + "|"
                    + CONNECTOR
                    + r")[ \t]+){0,3}\d{1,5}[A-Za-z]?\.?"
                    + UNIT_PART
                    + TAIL_PART,
                    0.6,
                ),
                Pattern(
                    "number number words (international)",
                    r"\b\d{1,6}[ \t]+\d{1,5}[ \t]+"
                    + CAP_WORD
                    + r"(?:[ \t]+(?:"
                    + CAP_WORD
                    + "|"
                    + CONNECTOR
                    + r")){1,5}"
                    + UNIT_PART
                    + TAIL_PART,
                    0.6,
                ),
                Pattern(
                    "street corner",
                    r"\bthe corner of [^,.\n]{3,60}? and [^,.\n?]{3,40}",
                    0.6,
                ),
                Pattern(
                    "PO box",
                    r"\b(?:P\.?\s?O\.?\s?Box|Post Office Box)\s+\d{1,6}\b"
                    + r"(?:[ \t]+"
                    + CAP_WORD
                    + r"){0,3}"
                    + UNIT_PART
                    + TAIL_PART,
                    0.7,
                ),
                Pattern(
                    "military box",
                    r"\b(?:(?:PSC|Unit)\s+\d{1,5},?\s+Box\s+\d{1,5}|(?:USNS|USS|USNV|USCGC)\s+"
                    r"[A-Z][a-z]+),?\s*\n?\s*(?:APO|FPO|DPO)\s+A[AEP]\s+\d{5}\b",
                    0.8,
                ),
            ],
            global_regex_flags=re.MULTILINE,
        )

    # "1040 line 1a", "W-2 box 12", "lines 8 and 9": references to forms, not addresses.
    TAX_REFERENCE = re.compile(
        r"(?i)^\d+[a-z]?\s+(?:lines?|box(?:es)?|and|or|to|through|of|part|step|page|form|"
        r"schedule|percent|%|times|x)\b"
    )

    def invalidate_result(self, pattern_text: str) -> bool:
        return bool(self.TAX_REFERENCE.match(pattern_text))


class StreetNameFirstRecognizer(PatternRecognizer):
    """Streets written name first ("Sludevej 13", "ul. Chrzanowska 61"), only where the words
    before say a place is meant, since "Form 1040" has the same shape."""

    CUE = re.compile(
        r"(?i)(?:\bat|\bon|\bto|address(?:es)?:?|lives at|located at|corner of|is in|"
        r"office is at|moved to|send (?:it|them) to)\s+(?:the\s+)?$"
    )

    def __init__(self) -> None:
        super().__init__(
            supported_entity="STREET_ADDRESS",
            name="StreetNameFirstRecognizer",
            patterns=[
                Pattern(
                    "name then number",
                    r"(?:(?:ul\.|u\.)[ \t]+)?"
                    + CAP_WORD
                    + r"(?:[ \t]+(?:"
                    + CAP_WORD
                    + "|"
                    + CONNECTOR
                    + r")){0,3}[ \t]+\d{1,5}[A-Za-z]?\b\.?"
                    + UNIT_PART
                    + TAIL_PART,
                    0.6,
                )
            ],
        )

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [r for r in results if self.CUE.search(text[max(0, r.start - 30) : r.start])]


class DateOfBirthRecognizer(PatternRecognizer):
    """Dates of birth: a date only where the words before it say it is one."""

    MONTHS = (
        r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
        r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
    )
    CONTEXT = re.compile(r"(?i)\b(?:born|birth|dob|d\.o\.b\.?|birthday|birthdate)\b[^.\n]{0,25}$")

    def __init__(self) -> None:
        months = self.MONTHS
        super().__init__(
            supported_entity="DATE_OF_BIRTH",
            name="DateOfBirthRecognizer",
            patterns=[
                Pattern("numeric date", r"\b\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)?\d{2}\b", 0.7),
                Pattern("iso date", r"\b(?:19|20)\d{2}-\d{2}-\d{2}\b", 0.7),
                Pattern(
                    "month day year",
                    rf"\b{months}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{{2}}\b",
                    0.7,
                ),
                Pattern(
                    "day month year",
                    rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+{months},?\s+(?:19|20)\d{{2}}\b",
                    0.7,
                ),
            ],
        )

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [r for r in results if self.CONTEXT.search(text[max(0, r.start - 40) : r.start])]


def _faker_names() -> frozenset[str]:
    """First and last names of every locale Faker ships: a gazetteer that needs no network."""
    import importlib
    import pkgutil

    import faker.providers.person as person

    names: set[str] = set()
    for module_info in pkgutil.iter_modules(person.__path__):
        module = importlib.import_module(f"faker.providers.person.{module_info.name}")
        provider = getattr(module, "Provider", None)
        if provider is None:
            continue
        for attribute in ("first_names", "first_names_male", "first_names_female", "last_names"):
            for klass in provider.__mro__:
                value = klass.__dict__.get(attribute)
                if value is not None:
                    break
            if hasattr(value, "keys"):
                names.update(value.keys())
            elif isinstance(value, (list, tuple, set, frozenset)):
                names.update(value)
    return frozenset(n for n in names if len(n) > 1)


# Words that are names somewhere but far more often something else in tax text.
COMMON_NAME_WORDS = """
Carry Report Enter File Claim Pay Use Mail Send Check Attach Include Add Subtract Complete
See Note Sign Figure Deduct Amend Skip Keep Read Ask Call Contact Review Contribute Estimate
Will May Bill Grant Page Mark Amber Park Street Green Young Love Price Rich Case Cash Tax
Federal State Form Line Schedule Credit Child Social Security Internal Revenue Service Income
Return Refund Deduction Standard Married Single Head Household Filing Joint Jan Feb March
April June July August Sept October November December Monday Tuesday Wednesday Thursday Friday
Saturday Sunday Christmas Easter God Lord King Queen Prince Princess Royal English Baby Tales
Power Discipline Salesperson Pleasures Stripes Bank Chase Wells Fargo Apple Amazon Google
Street Avenue Road Lane Drive Court North South East West New York Washington Jersey Virginia
Carolina Dakota Mexico Will Hope Faith Joy Summer Winter Autumn Spring Dawn Sky Rose Lily Ivy
Holly Iris
"""


class NameGazetteerRecognizer(LocalRecognizer):
    """People's names that spaCy's small model misses or calls an organization or place.

    A run of title-case words counts as a name when one of its tokens is a known
    first or last name; so does an ORG, GPE, NORP or LOC entity made only of known names.
    """

    ENTITY = "PERSON"
    OTHER_LABELS = frozenset({"ORG", "GPE", "NORP", "LOC", "FAC", "PRODUCT", "WORK_OF_ART"})
    COMMON = frozenset(COMMON_NAME_WORDS.split())

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.ENTITY], name="NameGazetteerRecognizer")
        self.names = _faker_names() - self.COMMON

    def load(self) -> None:
        return None

    def analyze(self, text, entities, nlp_artifacts=None):
        if nlp_artifacts is None or self.ENTITY not in entities:
            return []
        doc = nlp_artifacts.tokens
        results = []
        run: list = []

        def close_run() -> None:
            if run and any(t.text in self.names for t in run):
                results.append(self._result(run[0].idx, run[-1].idx + len(run[-1].text), 0.7))
            run.clear()

        for token in doc:
            # Title-case words stand in for proper nouns: the tagger is not run, for speed.
            if token.is_title and token.is_alpha and not token.is_stop:
                run.append(token)
            elif run and token.text == "." and len(run[-1].text) == 1:
                continue  # an initial: "Faina D. Yefremova"
            else:
                close_run()
        close_run()
        for ent in doc.ents:
            known = [t for t in ent if t.text != "."]
            if (
                ent.label_ in self.OTHER_LABELS
                and known
                and all(t.text in self.names for t in known)
            ):
                # A lone known word labelled a place is more often the place ("France").
                if ent.label_ in ("GPE", "LOC") and len(known) < 2:
                    continue
                results.append(self._result(ent.start_char, ent.end_char, 0.65))
        return results

    def _result(self, start: int, end: int, score: float) -> RecognizerResult:
        return RecognizerResult(
            entity_type=self.ENTITY,
            start=start,
            end=end,
            score=score,
            analysis_explanation=AnalysisExplanation(
                recognizer=self.name, original_score=score, textual_explanation="name gazetteer"
            ),
        )


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


class LongCardRecognizer(PatternRecognizer):
    """Card numbers of 13 to 19 digits that Presidio's pattern misses (19-digit Visa, 15-digit
    JCB), accepted only when they pass the Luhn check."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="CREDIT_CARD",
            name="LongCardRecognizer",
            patterns=[Pattern("12-19 digits", r"\b(?:\d[ -]?){11,18}\d\b", 0.6)],
            context=["card", "credit", "debit", "visa", "mastercard", "amex", "charge"],
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        digits = re.sub(r"\D", "", pattern_text)
        return not (12 <= len(digits) <= 19 and luhn_valid(digits))

    # Twelve-digit (Maestro) numbers pass Luhn one time in ten by chance: only near "card".
    SHORT_CUE = re.compile(r"(?i)\b(?:card|cc|maestro|debit)\b[^\n\d]{0,20}$")

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [
            r
            for r in results
            if len(re.sub(r"\D", "", text[r.start : r.end])) > 12
            or self.SHORT_CUE.search(text[max(0, r.start - 30) : r.start])
        ]


class ContextPhoneRecognizer(PatternRecognizer):
    """Phone numbers in national formats the phonenumbers library cannot place without a
    country, accepted only next to words that say a phone number is meant."""

    BEFORE = re.compile(
        r"(?i)(?:phone|tel|telephone|call|calling|fax|mobile|cell|desk|office|answering|"
        r"messages|contact|reach|text|sms|whatsapp|dial)\b[^\n\d]{0,20}$|(?:phone|tel|mobile|"
        r"fax|desk|cell):\s*$"
    )
    AFTER = re.compile(r"(?i)^[\s-]*(?:office|fax|mobile|cell|home|work|desk)\b")

    def __init__(self) -> None:
        super().__init__(
            supported_entity="PHONE_NUMBER",
            name="ContextPhoneRecognizer",
            patterns=[
                Pattern(
                    "grouped digits",
                    r"(?<![\w-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}"
                    r"(?:[ .-]\d{2,6}){1,4}(?:\s?x\d{1,5})?(?!\w|-\d)",
                    0.6,
                ),
                Pattern("plain digits", r"(?<![\w-])\+?\d{7,15}(?!\w|-\d)", 0.6),
            ],
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        digits = re.sub(r"\D", "", pattern_text.split("x")[0])
        return not 7 <= len(digits) <= 15

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [
            r
            for r in results
            if self.BEFORE.search(text[max(0, r.start - 40) : r.start])
            or self.AFTER.match(text[r.end : r.end + 12])
        ]


COMPANY_AFTER = re.compile(
    r"^(?:,?\s+(?:Inc|Ltd|LLC|LLP|Corp|Co|Group|Partners|Orchestra|Investments|Markets|"
    r"Holdings|Company|Associates|Consulting|Foundation|Bank|University)\b|-[A-Z])"
)
# "Hawkins, Richardson and Santana": surnames joined as a firm name; "founders: A, B and C" are
# people, and say so.
SURNAME_FIRM = re.compile(r"[A-Z][\w'-]+, [A-Z][\w'-]+,? and [A-Z][\w'-]+")
PEOPLE_BEFORE = re.compile(r"(?i)(?:founders?|partners|members|by|with|to|and)[:\s]*$")


def looks_like_company(text: str, start: int, end: int) -> bool:
    """Tell a surname used as a company name from a person, by what stands around it."""
    before = text[max(0, start - 40) : start]
    if COMPANY_AFTER.match(text[end : end + 20]) or before.endswith("-"):
        return True
    if re.search(r"(?:^|\s)The\s+$", before):
        return True
    for match in SURNAME_FIRM.finditer(text, max(0, start - 60), min(len(text), end + 60)):
        if match.start() <= start and end <= match.end():
            lead = text[max(0, match.start() - 15) : match.start()]
            # A longer list ("Gaetane, Hannah, Derek, Anna and Andrew") names people.
            return not (PEOPLE_BEFORE.search(lead) or lead.rstrip(" ").endswith((",", ":")))
    return False


NAME_TOKEN = r"[^\W\d_][\w'\u2019-]*"  # noqa: S105 (a pattern, not a secret)
NAME = NAME_TOKEN + r"(?:[ \t]+(?:[A-Z]\.?[ \t]+)?" + NAME_TOKEN + r"){0,2}"
# Words before a colon that label a field, not a speaker.
FIELD_LABELS = """
phone address e-mail email website name bot user mobile desk fax date time subject from
to note q a answer question directed by where when what who why how personal info cell
tel office home work hi hello dear thanks regards best sincerely yes no ok
"""
LABELS = frozenset(FIELD_LABELS.split())


class PersonContextRecognizer(LocalRecognizer):
    """People named where the words around them say so: "my name is", titles, speaker labels
    in chats, "X lives at", lists of founders. Lower-case names count when they are known."""

    ENTITY = "PERSON"
    CUES = [
        re.compile(
            r"(?i:\bmy name is|\bname is|\bnamed|\bcall me|\bcalled|\bname:|\bdear|\battn:?|"
            r"\bi'm|\bi am|\bthis is|\bcalls me|\bsay hi to|\bfollow up with|\bspeak to|"
            r"\bspeak with|\badd|\bchange it to|\bunder|\bby|\bstarring|\bfounders:)"
            r"[ \t]+(?P<name>" + NAME + r")"
        ),
        re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof|Mx)\.?[ \t]+(?P<name>" + NAME + r")"),
        re.compile(r"(?m)^[> \t]*(?P<name>" + NAME_TOKEN + r")[ \t]*:[ \t]*[\"“A-Z]"),
        # A line holding only a name, as in signatures and letterheads (known names only).
        KNOWN_ONLY := re.compile(
            r"(?m)^[> \t]*(?P<name>[A-Z][\w'-]+(?:[ \t]+[A-Z]\.?)?(?:[ \t]+[A-Z][\w'-]+){1,2})"
            r"[ \t]*$"
        ),
        re.compile(
            r"(?P<name>" + NAME + r")[ \t]+(?:lives|lived|spent|is from|had given|was born|"
            r"works|worked|said|asked|told|will be|is very|has been|can I)\b"
        ),
        re.compile(
            r"(?P<name>" + NAME_TOKEN + r")(?:'s|\u2019s)[ \t]+(?:kid|daughter|son|wife|"
            r"husband|address|account|mother|father|killers|version)\b"
        ),
    ]

    def __init__(self, names: frozenset[str]) -> None:
        super().__init__(supported_entities=[self.ENTITY], name="PersonContextRecognizer")
        self.lower_names = frozenset(n.lower() for n in names)

    def load(self) -> None:
        return None

    def _is_name(self, candidate: str, known_only: bool = False) -> bool:
        tokens = [t.strip(".") for t in candidate.split() if t.strip(".")]
        if not tokens or tokens[0].lower() in LABELS:
            return False
        if any(t.lower() in LABELS for t in tokens):
            return False
        capitalized = all(t[:1].isupper() for t in tokens if len(t) > 1)
        known = any(t.lower() in self.lower_names for t in tokens)
        return known or (capitalized and not known_only)

    def analyze(self, text, entities, nlp_artifacts=None):
        if self.ENTITY not in entities:
            return []
        results = []
        for cue in self.CUES:
            for match in cue.finditer(text):
                name = match.group("name")
                # Keep the name to the tokens that look like one.
                words = name.split()
                while words and not self._is_name(" ".join(words), cue is self.KNOWN_ONLY):
                    words.pop()
                if not words:
                    continue
                start = match.start("name")
                end = (
                    start + len(" ".join(words))
                    if len(words) < len(name.split())
                    else match.end("name")
                )
                results.append(
                    RecognizerResult(
                        entity_type=self.ENTITY,
                        start=start,
                        end=end,
                        score=0.7,
                        analysis_explanation=AnalysisExplanation(
                            recognizer=self.name,
                            original_score=0.7,
                            textual_explanation="person by context",
                        ),
                    )
                )
        return results
