"""Recognizers tax data needs that Presidio lacks or misses, all offline.

Presidio's own serve for IBAN and IP addresses, and its SSN and ABA checks label what the
identifier catch-all (`identifiers.py`) finds; the e-mail recognizer is replaced by one whose
domain check uses tldextract's bundled suffix list, because Presidio's reaches for the
public-suffix list over the network. URLs are not PII here and their recognizer (also
networked) is not loaded.
"""

from __future__ import annotations

import functools
import re

import tldextract

from governance.pii.loading import import_presidio
from governance.pii.names import common_words, frequent_words, spanish_only_words, unaccent
from governance.pii.structure import HEADERS, find_cells

import_presidio()

from presidio_analyzer import (
    AnalysisExplanation,
    LocalRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerResult,
)
from presidio_analyzer.predefined_recognizers import EmailRecognizer, SpacyRecognizer
from spacy.lang.en.stop_words import STOP_WORDS

# tldextract with no suffix-list URLs and no cache reads the snapshot shipped in the package.
OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


# Metadata key of a finding whose place alone proves its type: a chat speaker's role label
# ("Thu (Tax Pro):"), a column header or a JSON key ("last_name": "Le"). The scanner's last
# checks on names (a word that is also a month, a Spanish word or a brand) do not undo it.
BY_STRUCTURE = "by_structure"


def found(
    recognizer: str,
    entity: str,
    start: int,
    end: int,
    score: float,
    why: str,
    by_structure: bool = False,
) -> RecognizerResult:
    """A finding of one of the recognizers here, with its explanation."""
    return RecognizerResult(
        entity_type=entity,
        start=start,
        end=end,
        score=score,
        analysis_explanation=AnalysisExplanation(
            recognizer=recognizer, original_score=score, textual_explanation=why
        ),
        recognition_metadata={BY_STRUCTURE: True} if by_structure else None,
    )


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, checking the domain against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return has_public_suffix(pattern_text)


@functools.lru_cache(maxsize=65536)
def has_public_suffix(address: str) -> bool:
    """Whether an address or host name ends in a public suffix (bundled list, no network)."""
    return OFFLINE_TLD(address).fqdn != ""


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
        r"schedule|percent|%|times|x)\b|^\d{1,2}\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|"
        r"nov|dec)[a-z]*\.?,?\s+\d{4}\b"
    )

    def invalidate_result(self, pattern_text: str) -> bool:
        return bool(self.TAX_REFERENCE.match(pattern_text))

    # "Line 11 AGI 143,075", "Box 1 wages 52000": a number after a form reference word is a
    # line or box number, not a house number.
    REFERENCE_BEFORE = re.compile(
        r"(?i)\b(?:lines?|box(?:es)?|form|schedule|part|step|page|(?<!zip )(?<!postal )code|"
        r"pub(?:lication)?|"
        r"section|sec\.|no\.|#)\s*$"
    )

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [
            r
            for r in results
            if not self.REFERENCE_BEFORE.search(text[max(0, r.start - 16) : r.start])
        ]


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
    """Dates of birth: a date only where the words before it say it is one.

    Months are read in any case and short or long ("15-Sep-1965", "2nd of october 1954",
    "may 17, 1998"); a year spelled out has been written in digits by the detection view.
    """

    MONTHS = (
        r"(?i:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
        r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?|"
        # Spanish, long and short: "26 de enero de 1937", "6-ago-1995".
        r"ene(?:ro)?|feb(?:rero)?|mar(?:zo)?|abr(?:il)?|may(?:o)?|jun(?:io)?|jul(?:io)?|"
        r"ago(?:sto)?|sep(?:t?iembre)?|set(?:iembre)?|oct(?:ubre)?|nov(?:iembre)?|"
        r"dic(?:iembre)?)\.?"
    )
    CONTEXT = re.compile(
        r"(?i)\b(?:born|birth|dob|d\.o\.b\.?|birthday|birthdate|bday|b-day|date of birth|"
        r"naci[óo]|nacida|nacido|nacimiento|fecha de nac|f\.?\s?nac|cumplea[ñn]os)\b\.?"
        r"[^.\n]{0,30}$"
    )

    def __init__(self) -> None:
        months = self.MONTHS
        day = r"\d{1,2}(?i:st|nd|rd|th)?"
        year = r"(?:19|20)\d{2}"
        super().__init__(
            supported_entity="DATE_OF_BIRTH",
            name="DateOfBirthRecognizer",
            patterns=[
                Pattern("numeric date", r"\b\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)?\d{2}\b", 0.7),
                Pattern("iso date", r"\b(?:19|20)\d{2}[-/.]\d{1,2}[-/.]\d{1,2}\b", 0.7),
                Pattern(
                    "month day year",
                    rf"\b{months}\s+(?:the\s+)?{day},?\s+(?:of\s+)?{year}\b",
                    0.7,
                ),
                Pattern(
                    "day month year",
                    rf"\b{day}(?:\s+of)?[\s/.-]+{months},?[\s/.-]+(?:19|20)?\d{{2}}\b",
                    0.7,
                ),
                Pattern(
                    "spanish long date",
                    rf"\b\d{{1,2}}\s+de\s+{months}\s+(?:de(?:l)?\s+)?{year}\b",
                    0.7,
                ),
                Pattern("month year", rf"\b{months}\s+{year}\b", 0.6),
            ],
        )

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [r for r in results if self.CONTEXT.search(text[max(0, r.start - 40) : r.start])]


SPANISH_STREET_KIND = (
    r"(?:Paseo|Calle|Camino|Caminito|Avenida|Av\.|V[ií]a|Vista|Plaza|Rancho|Sierra|Mesa|"
    r"Loma|Cerro|Arroyo|Alameda|Corte|C[ií]rculo|Entrada|Placita|Callej[oó]n|Carretera|"
    r"Rua|Rue|Via)"
)


class RuralAddressRecognizer(PatternRecognizer):
    """Addresses with no street: rural routes, highway-contract and post-office boxes in their
    short forms ("RR 2 Box 152", "HC 64 Box 1020", "POB 431"), and Spanish street names that
    put the kind first ("1095 Paseo del Norte")."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="STREET_ADDRESS",
            name="RuralAddressRecognizer",
            patterns=[
                Pattern(
                    "rural route or highway contract",
                    r"(?i:\b(?:R\.?\s?R\.?|Rural\s+Route|RFD|H\.?\s?C\.?|Highway\s+Contract|"
                    r"Star\s+Route)\s*#?\s*\d{1,4},?\s+Box\s*#?\s*\d{1,6}[A-Z]?\b)" + TAIL_PART,
                    0.7,
                ),
                Pattern(
                    "post office box, short",
                    r"(?i:\b(?:P\.?\s?O\.?\s?B(?:ox)?\.?|Post\s+Office\s+Box|Box)\s*#?\s*"
                    r"\d{1,6}\b)(?=[ \t]*(?:,|\n|$|[ \t]+[A-Z]))" + TAIL_PART,
                    0.6,
                ),
                Pattern(
                    "kind-first street",
                    r"\b\d{1,6}[ \t]+"
                    + SPANISH_STREET_KIND
                    + r"(?:[ \t]+(?:"
                    + CAP_WORD
                    + "|"
                    + CONNECTOR
                    + r")(?!\w)){1,4}"
                    + UNIT_PART
                    + TAIL_PART,
                    0.7,
                ),
            ],
            global_regex_flags=re.MULTILINE,
        )

    BOX_CUE = re.compile(r"(?i)(?:box|mail|address|send|ship|p\.?\s?o\.?)")

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        # A bare "Box 12" is a form box unless it is written as a postal one.
        kept = []
        for r in results:
            value = text[r.start : r.end]
            if re.match(r"(?i)box\b", value) and not re.search(
                r"(?i)(?:p\.?\s?o\.?|post office|mail|address)[^.\n]{0,20}$",
                text[max(0, r.start - 30) : r.start],
            ):
                continue
            kept.append(r)
        return kept


class _CuedValueRecognizer(LocalRecognizer):
    """A value that only a cue word ahead of it makes an identifier: passports, licences."""

    ENTITY = ""
    CUE = re.compile("")
    VALUE = re.compile("")
    MIN_DIGITS = 3

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.ENTITY], name=type(self).__name__)

    def load(self) -> None:
        return None

    def analyze(self, text, entities, nlp_artifacts=None):
        if self.ENTITY not in entities:
            return []
        results = []
        for cue in self.CUE.finditer(text):
            match = self.VALUE.match(text, cue.end())
            if not match:
                continue
            value = match.group("value").rstrip(".-")
            if sum(c.isdigit() for c in value) < self.MIN_DIGITS:
                continue
            start = match.start("value")
            results.append(
                found(self.name, self.ENTITY, start, start + len(value), 0.7, "cued value")
            )
        return results


_FILLER = r"(?:[ \t]*(?:no\.?|nos?\b|number|num\b|#|id\b|is\b|was\b|reads\b|:|-|\(|\)))*[ \t]*"


class PassportRecognizer(_CuedValueRecognizer):
    """Passport numbers of any country: an alphanumeric value after the word passport."""

    ENTITY = "PASSPORT"
    CUE = re.compile(r"(?i)\bpassport(?:'s)?\b")
    VALUE = re.compile(
        r"(?i)(?:[ \t]+(?:card|book|booklet))?"
        + _FILLER
        + r"(?P<value>[A-Z0-9]{1,3}[ -]?\d[A-Z0-9]{4,11})\b"
    )
    MIN_DIGITS = 4


class DriverLicenseRecognizer(_CuedValueRecognizer):
    """State driver's licence numbers, whose formats differ from state to state: letters and
    digits in groups after the words that name a licence."""

    ENTITY = "US_DRIVER_LICENSE"
    CUE = re.compile(
        r"(?i)\b(?:driver'?s?|driving|operator'?s?)[ \t]+licen[cs]e|\bdl\b|\bd\.l\.|"
        r"\blicen[cs]e\b"
    )
    VALUE = re.compile(
        r"(?i)(?:[ \t]+(?:card))?"
        + _FILLER
        + r"(?P<value>[A-Z*]{0,6}\d[A-Z0-9*]{0,14}(?:[ -](?=[A-Z0-9*]*\d)[A-Z0-9*]{1,8}){0,4})\b"
    )


_fold = unaccent


ENGLISH_LOCALES = ("en", "en_US", "en_GB", "en_IE", "en_NZ", "en_KE", "en_NG", "en_IN", "en_PK")


@functools.cache
def english_first_names() -> frozenset[str]:
    """First names of the English-speaking locales, lower case ("john", "grant", "hope")."""
    import importlib

    names: set[str] = set()
    for locale in ENGLISH_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attribute in ("first_names", "first_names_male", "first_names_female"):
            value = getattr(provider, attribute, None) or ()
            names.update(n.lower() for n in (value.keys() if hasattr(value, "keys") else value))
    return frozenset(names)


@functools.cache
def faker_name_lists() -> tuple[frozenset[str], frozenset[str]]:
    """First and last names of every locale Faker ships, with their unaccented spellings:
    a gazetteer that needs no network."""
    import importlib
    import pkgutil

    import faker.providers.person as person

    first: set[str] = set()
    last: set[str] = set()
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
            target = last if attribute == "last_names" else first
            if hasattr(value, "keys"):
                target.update(value.keys())
            elif isinstance(value, (list, tuple, set, frozenset)):
                target.update(value)
    # Names of several words ("Van Der Berg") count word by word.
    first = {w for n in first for w in n.split()}
    last = {w for n in last for w in n.split()}
    first |= {_fold(n) for n in first}
    last |= {_fold(n) for n in last}
    return (
        frozenset(n for n in first if len(n) > 1),
        frozenset(n for n in last if len(n) > 1),
    )


def _faker_names() -> frozenset[str]:
    first, last = faker_name_lists()
    return first | last


@functools.cache
def common_english_words() -> frozenset[str]:
    """Everyday English words (spaCy's stop words and Faker's English word list): a name
    that is also one of these needs more than its spelling to count as a name."""
    from faker.providers.lorem.en_US import Provider as Lorem
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(w.lower() for w in (*STOP_WORDS, *Lorem.word_list))


@functools.cache
def _dictionary() -> frozenset[str]:
    from english_words import get_english_words_set

    return frozenset(get_english_words_set(["gcide"], lower=True, alpha=True))


_INFLECTIONS = (
    ("ies", "y"),
    ("ied", "y"),
    ("ing", ""),
    ("ing", "e"),
    ("ed", ""),
    ("ed", "e"),
    ("es", ""),
    ("s", ""),
    ("'s", ""),
    ("ly", ""),
    ("er", ""),
    ("est", ""),
)


@functools.lru_cache(maxsize=65536)
def is_english_word(lowered: str) -> bool:
    """Whether a lower-case word is an everyday English word: a dictionary word (or an
    inflection of one) that is also common in running text (`names.frequent_words`). GCIDE
    alone holds "roodly" and "maha"; frequency alone holds "nguyen" and "mohammed"."""
    if lowered in common_english_words():
        return True
    words, frequent = _dictionary(), frequent_words()
    if lowered in words:
        return lowered in frequent
    return any(
        lowered.endswith(suffix)
        and (lowered[: -len(suffix)] + stem) in words
        and (lowered in frequent or (lowered[: -len(suffix)] + stem) in frequent)
        for suffix, stem in _INFLECTIONS
        if len(lowered) > len(suffix) + 2
    )


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


# Words of tax forms and banking that spaCy's small model sometimes reads as names
# ("Schedule K-1", "Bill payments"): a PERSON finding holding one is not a person.
TAX_WORDS = frozenset(
    """schedule form line box credit credits deduction deductions payment payments
    tax taxes irs return returns refund refunds income wages interest dividend dividends
    account accounts statement statements expense expenses estimated standard itemized
    exemption penalty amended amendment basis depreciation adjustments worksheet instructions
    publication pub notice letter transcript extension filing status dependent dependents
    withholding payroll invoice invoices ledger balance mortgage property rent receipts
    capital gains loss losses business llc inc corp trust estate k-1 w-2 w-9 1099 1040 agi
    eitc ctc hsa ira roth 401k iban aba swift bic ssn ein itin dob acct routing visa""".split()
)
US_STATE_WORDS = frozenset(
    """Alabama Alaska Arizona Arkansas California Colorado Connecticut Delaware Florida Georgia
    Hawaii Idaho Illinois Indiana Iowa Kansas Kentucky Louisiana Maine Maryland Massachusetts
    Michigan Minnesota Mississippi Missouri Montana Nebraska Nevada Hampshire Jersey Mexico York
    Carolina Dakota Ohio Oklahoma Oregon Pennsylvania Rhode Island Tennessee Texas Utah Vermont
    Virginia Washington Wisconsin Wyoming America Canada India China Israel Jordan Chad
    Paris London Berlin Sydney Austin Houston Dallas Phoenix Denver Orlando""".split()
)
MONTHS_AND_DAYS = frozenset(
    """january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday jan feb mar apr jun jul aug sep
    sept oct nov dec mon tue tues wed thu thur thurs fri sat sun""".split()
)
# Tax preparers, banks, brokers and lenders that tax documents cite, whose names read as
# people's ("Jackson Hewitt", "Charles Schwab", "Sallie Mae", "Raymond James").
TAX_BRANDS = frozenset(
    """jackson hewitt|charles schwab|schwab|sallie mae|h&r block|block|raymond james|edward
    jones|wells fargo|fidelity|vanguard|navient|nelnet|mohela|turbotax|intuit|taxact|taxslayer|
    robinhood|coinbase|ameritrade|td ameritrade|merrill|merrill lynch|morgan stanley|goldman
    sachs|chase|citi|citibank|truist|ally|discover|capital one|paypal|venmo|zelle|cash app|
    liberty tax|freedom tax|jackson|hewitt|sofi|marcus|betterment|wealthfront|stash|acorns|
    etrade|e*trade|schwab bank|ameriprise|primerica|edward jones""".replace("\n", " ")
    .replace("  ", " ")
    .split("|")
)


# Whom a greeting addresses when it names nobody ("Hi Team,", "Dear Sir,").
ADDRESSED_GROUPS = frozenset(
    """sir madam maam team everyone everybody all folks friend friends there guys again
    colleague colleagues support y'all yall people""".split()
)
# What a spreadsheet or a program writes for a missing value ("Wrocław, nan, 53-320").
EMPTY_VALUES = frozenset("nan null none nil undefined na".split())

# Prefixes that make hyphenated words, not names ("pre-tax", "co-op", "re-do").
PREFIXES = frozenset(
    "pre non re co ex anti mid post sub self multi semi de un dis mis over out under".split()
)
NAME_PARTICLES = frozenset(
    "al el bin ben abu ibn bint de del della la le van von der den da di dos das du st ste "
    "saint mac mc o d".split()
)


class _Names:
    """A curated set of names widened by a test on the lexicon: supports `in` only."""

    def __init__(self, base: frozenset[str], test) -> None:
        self.base, self.test = base, test

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and (word in self.base or self.test(word))


@functools.cache
def spanish_words() -> frozenset[str]:
    """Spanish words that are also names somewhere ("Ella", "Le", "Buenas"): spaCy's Spanish
    stop words, with greetings and family words that open and close messages."""
    from spacy.lang.es.stop_words import STOP_WORDS as SPANISH_STOP

    extra = """hola buenas buenos tardes noches dias días gracias saludos atentamente señor
    señora señorita mamá mama papá papa madre padre hijo hija esposo esposa hermano hermana
    abuela abuelo tía tia tío tio querido querida estimado estimada favor usted ustedes
    cliente dirección direccion correo nacimiento fecha seguro social nombre apellido
    formulario reembolso impuestos contador"""
    return frozenset(_fold(w).lower() for w in (*SPANISH_STOP, *extra.split()))


class NameGazetteerRecognizer(LocalRecognizer):
    """People's names that spaCy's small model misses or calls an organization or place.

    A run of title-case words counts as a name when one of its tokens is a known first or last
    name that is not also a common word; so does a run of two or three words that reads as
    first name then last name even when both are words ("Bill Price", "Hope Cash"), and an
    ORG, GPE, NORP or LOC entity made only of known names.
    """

    ENTITY = "PERSON"
    OTHER_LABELS = frozenset({"ORG", "GPE", "NORP", "LOC", "FAC", "PRODUCT", "WORK_OF_ART"})
    PLACE_LABELS = frozenset({"GPE", "LOC", "NORP", "LANGUAGE"})
    COMMON = frozenset(COMMON_NAME_WORDS.split())

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.ENTITY], name="NameGazetteerRecognizer")
        from governance.pii.names import lexicon

        self.lexicon = lexicon()
        # A cache of this gazetteer's own. A cache on the method (functools.lru_cache over
        # `self`) was the class's: its keys kept every gazetteer a process ever built alive,
        # and a scan runner builds one per scanner load (a fresh model every 50,000 texts):
        # tens of MB more at each load, 2.8 GiB after 10^6 records.
        self.strength = functools.lru_cache(maxsize=131072)(self.strength)  # type: ignore[method-assign]
        faker_first, faker_last = faker_name_lists()
        faker_names = (faker_first | faker_last) - self.COMMON
        common = common_english_words() | {w.lower() for w in self.COMMON} | TAX_WORDS
        faker_lower = frozenset(n.lower() for n in faker_names)
        english_first = self.english_first = english_first_names()
        # Faker's curated lists, widened by the lexicon of names-dataset: a word it ranks among
        # a country's 5,000 most common names that is no dictionary word is a name whatever
        # its spelling ("Chinwe", "Jeanty", "Tsegaye").
        self.first_names = _Names(faker_first, self._strong_first)
        self.last_names = _Names(faker_last, self._strong_last)
        self.names = _Names(faker_names, self._strong)
        self.lower_names = _Names(faker_lower, self._ranked)
        # Known names that are not everyday words: what makes a capitalized word a name.
        self.name_words = _Names(frozenset(faker_lower - common - MONTHS_AND_DAYS), self._strong)
        # A dictionary word counts as a lower-case name only when it is an English first name
        # ("john", not "son" or "visa", which are names in other languages).
        self.uncommon = _Names(
            frozenset(
                n
                for n in faker_lower - common - MONTHS_AND_DAYS
                if n in english_first or not is_english_word(n)
            ),
            self._strong,
        )

    def strength(self, word: str) -> int:
        """How much a word says it is a name on its own: 2, a ranked name that is no word of
        English or Spanish; 1, a common name that is also a word ("Hope", "Park"), or a word in
        no dictionary and no list ("Sungyoon"); 0, a word, a label or a tax term."""
        parts = [p for p in re.split("[-\u2019']", word) if p]
        if len(parts) > 1:
            # "Al-Farsi", "El-Sayed", "Jean-Robert": particles say nothing either way.
            named = [p for p in parts if _fold(p).lower() not in NAME_PARTICLES]
            strengths = [self.strength(p) for p in named]
            if not strengths:
                return 0
            if min(strengths) > 0:
                return min(2, max(strengths))
            # "Ha-Hye", "In-yeon", "Bien-Aimé": a short syllable that is also a word does not
            # undo a name; a compound of words ("follow-up", "self-employed") has none.
            short = all(len(p) <= 4 or s > 0 for p, s in zip(named, strengths, strict=True))
            joined = _fold("".join(named)).lower()
            if max(strengths) == 0:
                # Romanized syllables ("Ha-Won", "Sol-Sung", "Jun-bin") are often words one by
                # one; joined, with a syllable no everyday English word and none a prefix
                # ("pre-tax", "co-op"), they are a given name. "set-up", "add-on" are not.
                syllables = [_fold(p).lower() for p in named]
                return (
                    1
                    if len(syllables) == 2
                    and all(2 <= len(p) <= 4 and p.isalpha() for p in syllables)
                    and not any(p in PREFIXES for p in syllables)
                    and not all(p in common_words() for p in syllables)
                    and not is_english_word(joined)
                    else 0
                )
            return 1 if short and not is_english_word(joined) else 0
        lowered = _fold(word).lower()
        if (
            len(lowered) < 2
            or not lowered.isalpha()
            or lowered in STOP_WORDS
            or lowered in LABELS
            or lowered in TAX_WORDS
            or lowered in MONTHS_AND_DAYS
            or lowered in spanish_words()
            or lowered in EMPTY_VALUES
        ):
            return 0
        tier = self.lexicon.rank_tier(lowered)
        if is_english_word(lowered):
            # A word that is also a name counts only as a name common somewhere ("Park",
            # "Song": among a country's 1,000 most common) or an English first name ("Hope");
            # the list's long tail holds words ("team", "says", "concern").
            return 1 if tier == 1 or lowered in self.english_first else 0
        if len(lowered) == 2:
            return 1 if tier else 0
        return 2 if tier else 1

    def _strong(self, word: str) -> bool:
        return self.strength(word) == 2 and self.lexicon.rank_tier(word) in (1, 2)

    def _strong_first(self, word: str) -> bool:
        return self._strong(word) and self.lexicon.tiers(word)[0] in (1, 2)

    def _strong_last(self, word: str) -> bool:
        return self._strong(word) and self.lexicon.tiers(word)[1] in (1, 2)

    def _ranked(self, lowered: str) -> bool:
        return self.strength(lowered) > 0 and self.lexicon.rank_tier(lowered) in (1, 2)

    def is_uncommon_name(self, lowered: str) -> bool:
        """A known name that is not also an everyday word, of English or of Spanish ("mando",
        "aviso" are names somewhere; in lower case in a message they are Spanish)."""
        folded = _fold(lowered)
        return (
            folded not in common_words()
            and folded not in spanish_only_words()
            and folded not in spanish_words()
            and lowered in self.uncommon
        )

    def is_name_word(self, lowered: str) -> bool:
        """A known first or last name, everyday word or not."""
        return lowered in self.lower_names

    def is_english_word(self, lowered: str) -> bool:
        return is_english_word(lowered)

    def named_in_place(self, word: str) -> bool:
        """Whether a word that says nothing on its own ("Will", "Thu", "Jun", "Do") is a name
        where a position says a person is meant: written as a name (capitalized, or in
        capitals), an English first name or among some country's 1,000 commonest names, and
        no Spanish word, label, tax word or way of addressing a group ("Hi Team")."""
        if len(word) < 2 or not (word.istitle() or word.isupper()):
            return False
        lowered = _fold(word).lower()
        if (
            lowered in spanish_words()
            or lowered in LABELS
            or lowered in TAX_WORDS
            or lowered in ADDRESSED_GROUPS
            or lowered in EMPTY_VALUES
        ):
            return False
        if lowered in self.english_first:
            return True
        return lowered not in STOP_WORDS and self.lexicon.rank_tier(lowered) == 1

    def is_first_name(self, lowered: str) -> bool:
        """An English first name, everyday word or not ("mark", "joy")."""
        return lowered in self.english_first

    stop_words = frozenset(STOP_WORDS)

    def name_like(self, words: list[str]) -> bool:
        """Some word is a known name, or no dictionary word ("Where's My", "Taxpayer Advocate
        Service" and "Mileage" are words; "Oluwaseun" is not)."""
        lowered = [w.lower().removesuffix("'s").removesuffix("\u2019s") for w in words]
        # "Hope Cash", "Chase Young": an English first name leading capitalized words.
        if (
            len(words) >= 2
            and lowered[0] in self.english_first
            and all(w[:1].isupper() for w in words)
        ):
            return True
        return (
            any(w in self.name_words for w in lowered)
            or any(
                w.isalpha() and not is_english_word(w) and w not in MONTHS_AND_DAYS for w in lowered
            )
            # "Ha-Won", "Jean-Robert": a hyphenated name is judged as one word.
            or any("-" in w and self.strength(w) > 0 for w in words)
        )

    def load(self) -> None:
        return None

    def _word_name(self, run: list) -> bool:
        """First name then last name, even when both are words: "Bill Price", "Chase Young"."""
        if not 2 <= len(run) <= 3:
            return False
        lowered = [t.text.lower() for t in run]
        if any(w in TAX_WORDS or w in MONTHS_AND_DAYS for w in lowered):
            return False
        return run[0].text in self.first_names and run[-1].text in self.last_names

    def analyze(self, text, entities, nlp_artifacts=None):
        if nlp_artifacts is None or self.ENTITY not in entities:
            return []
        doc = nlp_artifacts.tokens
        places = {
            (ent.start_char, ent.end_char): ent.label_
            for ent in doc.ents
            if ent.label_ in self.PLACE_LABELS
        }
        results = []
        run: list = []

        def close_run() -> None:
            # A lone capitalized word that is also a dictionary word ("Good", "January") is
            # not taken for a name on its spelling alone.
            if len(run) == 1 and not self.name_like([run[0].text]):
                run.clear()
            if run and (any(t.text in self.names for t in run) or self._word_name(run)):
                start, end = run[0].idx, run[-1].idx + len(run[-1].text)
                # A lone word that spaCy calls a place or a people ("Madrid", "German"), unless
                # it is a first name (spaCy's small model calls "Rebecca" a place).
                if not (
                    len(run) == 1
                    and (start, end) in places
                    and (
                        run[0].text not in self.first_names.base
                        or run[0].text in US_STATE_WORDS
                        or places[(start, end)] == "NORP"
                    )
                ):
                    results.append(self._result(start, end, 0.7))
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
                # A lone known word labelled a place or a people is more often that
                # ("France", "German").
                if ent.label_ in ("GPE", "LOC", "NORP", "LANGUAGE") and len(known) < 2:
                    continue
                results.append(self._result(ent.start_char, ent.end_char, 0.65))
        return results

    def _result(self, start: int, end: int, score: float) -> RecognizerResult:
        return found(self.name, self.ENTITY, start, end, score, "name gazetteer")


class FilteredSpacyRecognizer(SpacyRecognizer):
    """spaCy's PERSON entities, less those that are tax words or lower-case common words
    ("Schedule K-1", "Bill payments", "my son")."""

    def __init__(self, gazetteer: NameGazetteerRecognizer) -> None:
        super().__init__(supported_entities=["PERSON"])
        self.gazetteer = gazetteer

    def analyze(self, text, entities, nlp_artifacts=None):
        results = super().analyze(text, entities, nlp_artifacts)
        kept = []
        for r in results:
            # A name does not run across a line break ("Lovelyn D.\nSenior").
            cut = text.find("\n", r.start, r.end)
            if cut >= 0:
                r.end = cut
                while r.end > r.start and text[r.end - 1] in " .,":
                    r.end -= 1
            if r.end > r.start and self._plausible(text[r.start : r.end]):
                kept.append(r)
        return kept

    def _plausible(self, span: str) -> bool:
        words = [w.strip(".,'\u2019") for w in span.split()]
        words = [w for w in words if w]
        if not words:
            return False
        lowered = [w.lower().removesuffix("'s") for w in words]
        if any(w in TAX_WORDS for w in lowered):
            return False
        # A lone word that is a name only sometimes ("Bill payments are due").
        if len(words) == 1 and words[0] in NameGazetteerRecognizer.COMMON:
            return False
        if not self.gazetteer.name_like(words):
            return False
        # Every word is capitalized, or a known name that is no everyday word.
        return all(w[:1].isupper() or self.gazetteer.is_uncommon_name(w.lower()) for w in words)


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


# Words that end a firm's name, as firms write them.
FIRM_WORDS = (
    "Inc Ltd LLC LLP Corp Co Group Partners Orchestra Investments Markets Holdings Company "
    "Associates Consulting Foundation Bank University Tax Taxes Services Accounting Bookkeeping "
    "Financial Insurance Realty Dental Clinic Church Capital Advisors Law CPA CPAs PC PLLC"
).split()
# A firm word after a name ("Lee Credit Union", "Nguyen, LLC").
COMPANY_AFTER = re.compile(
    r"^(?:,?[ \t]+(?:" + "|".join([*FIRM_WORDS, "Credit", "Mortgage"]) + r")\b|-[A-Z])"
)
# "Hawkins, Richardson and Santana": surnames joined as a firm name; "founders: A, B and C" are
# people, and say so.
SURNAME_FIRM = re.compile(r"[A-Z][\w'-]+, [A-Z][\w'-]+,? and [A-Z][\w'-]+")
PEOPLE_BEFORE = re.compile(r"(?i)(?:founders?|partners|members|by|with|to|and)[:\s]*$")


# The last word of a firm's name: "Usaa Group", "Wolfram Research", "Rio Grande Tax Services".
COMPANY_WORDS = frozenset(w.lower() for w in FIRM_WORDS) | frozenset(
    """research institute sons brothers studios records labs systems technologies solutions
    enterprises industries international agency""".split()
)
# "I work for Kluwer", "employed at Thinknum": an employer, not a person.
EMPLOYER_BEFORE = re.compile(r"(?i)\b(?:work(?:ed|s|ing)?|employed|job)[ \t]+(?:for|at)[ \t]+$")


def looks_like_company(text: str, start: int, end: int) -> bool:
    """Tell a surname used as a company name from a person, by what stands around it."""
    span = " ".join(text[start:end].lower().split())
    if span in TAX_BRANDS or any(brand in span and len(brand) > 6 for brand in TAX_BRANDS):
        return True
    before = text[max(0, start - 40) : start]
    if COMPANY_AFTER.match(text[end : end + 20]) or before.endswith("-"):
        return True
    words = span.split()
    if len(words) > 1 and words[-1].strip(".,") in COMPANY_WORDS:
        # "Hunter Church", "Sunny Church": a first name and a surname that is also a firm
        # word name a person; "Grace Church" may be either, and redacting a church costs
        # less than releasing a person.
        first, last = (w.capitalize() for w in (words[0], words[-1].strip(".,")))
        firsts, lasts = faker_name_lists()
        return not (len(words) == 2 and first in firsts and last in lasts)
    if EMPLOYER_BEFORE.search(before):
        return True
    if re.search(r"(?:^|\s)The\s+$", before):
        # "The Steffen Mauer version": a first name and a surname after "The" are a person.
        words = text[start:end].split()
        return not (len(words) >= 2 and words[0] in faker_name_lists()[0])
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
tel office home work hi hello dear thanks regards best sincerely yes no ok customer agent
client support rep assistant system advisor operator me you taxpayer preparer caller
"""
LABELS = frozenset(FIELD_LABELS.split()) | frozenset(
    """tp log debug payload status notes note re fw fwd sent cc bcc wage wages code ref
    reference case ticket error warning info update summary""".split()
)


def plausible_person(span: str, gazetteer: NameGazetteerRecognizer) -> bool:
    """A last check on any PERSON finding: some word of it can be a name, it is not a city
    with its state ("Brooklyn, NY"), and a lower-case finding holds a name by its own
    strength and no Spanish function word ("mando mañana con el")."""
    words = [w.strip(".,;:()'\"") for w in span.split()]
    words = [w for w in words if w]
    if not words or re.search(r",\s*[A-Z]{2}$", span.strip()):
        return False
    strengths = [gazetteer.strength(w) for w in words if len(w) > 1]
    if not strengths:
        return False
    if max(strengths) == 0:
        # "Will (Tax Pro):", "Hi Thu,": a name that is also a word, written as a name.
        return len(words) == 1 and gazetteer.named_in_place(words[0])
    return not (
        span == span.lower()
        and len(words) > 1
        and (any(_fold(w).lower() in spanish_words() for w in words) or max(strengths) < 2)
    )


class PersonContextRecognizer(LocalRecognizer):
    """People named where the words around them say so: "my name is", titles, speaker labels
    in chats, "X lives at", lists of founders. Lower-case names count when they are known."""

    ENTITY = "PERSON"
    CUES = [
        re.compile(
            r"(?i:\bmy name is|\bname is|\bnamed|\bcall me|\bcalled|\bname:|\bdear|\battn:?|"
            r"\bi'm|\bi am|\bthis is|\bcalls me|\bsay hi to|\bfollow up with|\bspeak to|"
            r"\bspeak with|\badd|\bchange it to|\bunder|\bby|\bstarring|\bfounders:|"
            # Agents' notes: "Call from X", "Spoke w/ X", "TP: X" (the taxpayer).
            r"\bcall(?:ed)? from|\b(?:spoke|talked|met)[ \t]+(?:w/|with|to)|\bTP:)"
            r"[ \t]+(?P<name>" + NAME + r")"
        ),
        re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof|Mx)\.?[ \t]+(?P<name>" + NAME + r")"),
        # Who someone is to the writer, or to the return: "my client adaeze okafor",
        # "account holder: NGUYEN VAN MINH", "spouse - Hope Cash", "From: kwame".
        re.compile(
            r"(?i:\b(?:(?:my|his|her|our|their|the|a)[ \t]+)?(?:client|customer|taxpayer|"
            r"spouse|husband|wife|son|daughter|mom|mother|dad|father|brother|sister|boss|"
            r"manager|employee|employer|tenant|landlord|dependent|dependant|nephew|niece|"
            r"grandson|granddaughter|grandmother|grandfather|partner|preparer|accountant|"
            r"cpa|account[ \t]+holder|beneficiary|payee|recipient|cardholder|co-?signer|"
            r"signer|applicant|member|contact|sender|caller|agent|rep|representative|signed|"
            r"attn)(?:'s)?(?:[ \t]+(?:full[ \t]+)?name)?(?:[ \t]+is)?[ \t]*[,:-]?"
            r"|\b(?:from|to|cc)[ \t]*:)[ \t]+(?P<name>" + NAME + r")"
        ),
        # A signature after a closing: "Thanks,\nadaeze", "regards - T. Nguyen".
        re.compile(
            r"(?i:\b(?:regards|thanks|thank you|sincerely|best|cheers|cordially|respectfully)"
            r")[ \t]*[,.!-]?[ \t]*\n?[> \t]*(?P<name>" + NAME + r")"
        ),
        re.compile(r"(?m)^[> \t]*(?P<name>" + NAME_TOKEN + r")[ \t]*:[ \t]*[\"“A-Z]"),
        # First name, initial, last name: "Faina D. Yefremova", "ravil g yefimov".
        INITIALED := re.compile(
            r"(?<![\w.])(?P<name>[^\W\d_][\w'-]+[ \t]+[^\W\d_]\.?[ \t]+[^\W\d_][\w'-]+)(?![\w-])"
        ),
        # A line holding only a name, as in signatures and letterheads (known names only).
        KNOWN_ONLY := re.compile(
            r"(?m)^[> \t]*(?P<name>[A-Z][\w'-]+(?:[ \t]+[A-Z]\.?)?(?:[ \t]+[A-Z][\w'-]+){1,2})"
            r"[ \t]*$"
        ),
        re.compile(
            r"(?P<name>" + NAME + r")[ \t]+(?:lives|lived|spent|is from|had given|was born|"
            r"works|worked|said|asked|told|will be|is very|has been|can I|called|emailed|wrote|"
            r"phoned|texted|says|asks|wants|needs|owes|paid|filed|signed|moved|died|passed)\b"
        ),
        re.compile(
            r"(?P<name>" + NAME_TOKEN + r")(?:'s|\u2019s)[ \t]+(?:kid|daughter|son|wife|"
            r"husband|address|account|mother|father|killers|version)\b"
        ),
    ]

    def __init__(self, gazetteer: NameGazetteerRecognizer) -> None:
        super().__init__(supported_entities=[self.ENTITY], name="PersonContextRecognizer")
        self.gazetteer = gazetteer
        self.lower_names = gazetteer.lower_names

    def load(self) -> None:
        return None

    def _is_initialed(self, candidate: str) -> bool:
        """First, initial, last in any case: each name word a known name or no dictionary
        word, neither a stop, label or tax word, and the case the same throughout."""
        first, _initial, last = candidate.split()
        words = [first, last.removesuffix("'s")]
        lowered = [w.lower() for w in words]
        if any(w in STOP_WORDS or w in LABELS or w in TAX_WORDS for w in lowered):
            return False
        if not (all(w[:1].isupper() for w in words) or all(w.islower() for w in words)):
            return False
        return all(
            self.gazetteer.is_name_word(w) or not is_english_word(w) for w in lowered
        ) and any(self.gazetteer.is_name_word(w) or not is_english_word(w) for w in lowered)

    def _is_name(self, candidate: str, known_only: bool = False) -> bool:
        tokens = [t.strip(".") for t in candidate.split() if t.strip(".")]
        if not tokens or tokens[0].lower() in LABELS:
            return False
        if len(tokens) == 1 and tokens[0].lower() in STOP_WORDS:
            return False  # "I was born", "He said"
        if any(t.lower() in LABELS for t in tokens):
            return False
        if any(t.lower() in TAX_WORDS for t in tokens):
            return False
        # A word in lower or upper case counts only as a known name that is no everyday word
        # ("my son" is not a person; "my son kwame" names one).
        for token in tokens:
            title = token[:1].isupper() and not token.isupper()
            if len(token) > 1 and not title and not self.gazetteer.is_uncommon_name(token.lower()):
                return False
        capitalized = all(t[:1].isupper() for t in tokens if len(t) > 1)
        known = any(t.lower() in self.lower_names for t in tokens)
        words = [t for t in tokens if len(t) > 1]
        if not self.gazetteer.name_like(words):
            return False
        if known_only and not known:
            # A line holding only capitalized words none of which is in a dictionary
            # ("Gyala Antall", a signature) is a name too; "Asc Partners" is not.
            return capitalized and not any(is_english_word(w.lower()) for w in words)
        return known or capitalized

    def analyze(self, text, entities, nlp_artifacts=None):
        if self.ENTITY not in entities:
            return []
        places = set()
        if nlp_artifacts is not None:
            places = {
                (e.start_char, e.end_char)
                for e in nlp_artifacts.tokens.ents
                if e.label_ in NameGazetteerRecognizer.PLACE_LABELS
            }
        results = []
        for cue in self.CUES:
            for match in cue.finditer(text):
                name = match.group("name")
                if cue is self.INITIALED:
                    if self._is_initialed(name):
                        results.append(self._result(match.start("name"), match.end("name")))
                    continue
                # Keep the name to the tokens that look like one.
                words = name.split()
                start = match.start("name")
                # "and Hope Cash called": leading small words are not part of the name.
                while len(words) > 1 and words[0].lower() in STOP_WORDS:
                    start += len(words[0]) + 1
                    name = name[len(words[0]) :].lstrip()
                    words.pop(0)
                while words and not self._is_name(" ".join(words), cue is self.KNOWN_ONLY):
                    words.pop()
                if not words:
                    continue
                end = (
                    start + len(" ".join(words))
                    if len(words) < len(name.split())
                    else start + len(name)
                )
                if len(words) == 1 and (start, end) in places:
                    continue  # "I'm German", "this is Madrid"
                results.append(self._result(start, end))
        return results

    def _result(self, start: int, end: int) -> RecognizerResult:
        return found(self.name, self.ENTITY, start, end, 0.7, "person by context")


_TOKEN = r"[^\W\d_][\w'\u2019-]*\.?"  # noqa: S105 (a pattern, not a secret)
_NAMES_1_3 = _TOKEN + r"(?:[ \t]+" + _TOKEN + r"){0,2}"
_NAMES_1_4 = _TOKEN + r"(?:[ \t]+" + _TOKEN + r"){0,3}"
_GREETING = (
    r"hi|hello|hey|dear|hola|buenas(?:[ \t]+(?:tardes|noches))?|buenos[ \t]+d[ií]as|"
    r"good[ \t]+(?:morning|afternoon|evening)|thanks|thank[ \t]+you|gracias|welcome"
)
_CLOSING = (
    r"regards|thanks|thank[ \t]+you|sincerely|best|cheers|cordially|respectfully|gracias|"
    r"saludos|atentamente|un[ \t]+saludo|cordialmente|take[ \t]+care"
)
_RELATION = (
    r"husband|wife|spouse|son|daughter|mom|mother|dad|father|brother|sister|partner|client|"
    r"esposo|esposa|mam[aá]|madre|pap[aá]|padre|hijo|hija|hermano|hermana|abuela|abuelo|"
    r"cliente|suegra|suegro"
)


class NamePositionRecognizer(LocalRecognizer):
    """Names where the position says a person is meant, in any case, a single given name
    included: greetings and sign-offs, chat speaker labels, "my husband X", "me llamo X", the
    header of a quoted reply, the name fields of tax forms, "Last, First M" and "First L.".

    A position is evidence, not proof: each word must still be able to be a name (the
    gazetteer's `strength`: a ranked name, or a word in no dictionary), never a label, a tax
    word or a Spanish word; the weaker positions (a vocative, "Last, First", "First L.") need
    a word that is a name by its own strength.
    """

    ENTITY = "PERSON"
    # (pattern, how its words are judged): True, the position is enough for any word that
    # can be a name; False, every word must be a name and one a name by its own strength;
    # "right", as True but read from the right; None, a speaker with a role, whose word
    # need only not be a label.
    POSITIONS: list[tuple[re.Pattern[str], bool | str | None]] = [
        # A speaker with a role: "Will (Tax Pro):" names a person even when it is a word.
        (
            re.compile(
                r"(?m)^[ \t>]*(?:\[[^\]\n]{1,40}\][ \t]*)?(?P<name>[A-Z][\w'-]+(?:[ \t]+[A-Z]"
                r"[\w'.-]*)?)[ \t]+\((?i:tax[ \t]+pro|agent|preparer|cpa|ea|advisor|support|"
                r"specialist|expert|rep|client|customer)\)[ \t]*:"
            ),
            None,
        ),
        # Chat speaker labels: "[10:42] chinwe:", "(9:14 AM) Maha (Tax Pro):"; a bare
        # "Word:" at the start of a line is more often a field ("Date:", "Log:").
        (
            re.compile(
                r"(?m)^[ \t>]*(?:\[[^\]\n]{1,40}\][ \t]*|\(?\d{1,2}:\d{2}(?::\d{2})?"
                r"(?:[ \t]?[AaPp][Mm])?\)?[ \t]+)(?P<name>" + _NAMES_1_3 + r")"
                r"(?:[ \t]+\([^)\n]{1,30}\))?[ \t]*:(?!//)"
            ),
            True,
        ),
        (
            re.compile(
                r"(?m)^[ \t>]*(?P<name>" + _NAMES_1_3 + r")(?:[ \t]+\([^)\n]{1,30}\))?"
                r"[ \t]*:(?!//)"
            ),
            False,
        ),
        (
            re.compile(
                r"(?i:\b(?:" + _GREETING + r"))[ \t]*,?[ \t]+(?P<name>" + _NAMES_1_3 + r")"
                r"(?=[ \t]*(?:[,.!:;\n]|$))"
            ),
            True,
        ),
        (
            re.compile(
                r"(?im:\b(?:" + _CLOSING + r")[ \t]*[,.!]*[ \t]*\n(?:[ \t]*--[ \t]*\n)?"
                r"[> \t]*(?P<name>" + _NAMES_1_3 + r")[ \t]*$)"
            ),
            True,
        ),
        (
            re.compile(
                r"(?i:\b(?:my|mi|his|her|our|their|su)[ \t]+(?:" + _RELATION + r"))[ \t]*,?"
                r"[ \t]+(?P<name>" + _NAMES_1_3 + r")"
            ),
            True,
        ),
        (
            re.compile(
                r"(?i:\b(?:me[ \t]+llamo|mi[ \t]+nombre[ \t]+es|soy|le[ \t]+escribe|"
                r"speaking[ \t]+with|habla|account[ \t]+holder|titular|i'm|i[ \t]+am|"
                r"this[ \t]+is|my[ \t]+name[ \t]+is|mis[ \t]+datos|my[ \t]+details)[ \t]*:?)"
                r"[ \t]+"
                r"(?P<name>" + _NAMES_1_3 + r")"
            ),
            True,
        ),
        # The author of a quoted reply, and a name before an address in angle brackets
        # ("... 9:12 AM Young-hee Baek <baek@...>"): read from the right.
        (re.compile(r"(?P<name>" + _NAMES_1_4 + r")[ \t]*<[^<>\s@]+@"), "right"),
        # Names in capitals, in any text: "MARICELA DÍAZ", "OLU ADEYEMI" (every word a name).
        (
            re.compile(
                r"(?<![\w'-])(?P<name>[^\W\d_a-z][^\W\d_a-z'-]+(?:[ \t]+[^\W\d_a-z]"
                r"[^\W\d_a-z'-]*){1,2})(?![\w'-])"
            ),
            False,
        ),
        # A signature: a line holding only a name or two after a blank line (quoted or not)
        # and before a blank line or the end: "> \n> iryna\n\n", "Guy"; any line holding only
        # a name or two needs names by their own strength ("Tsegaye").
        (
            re.compile(
                r"(?:\A|\n)[> \t]*\n[> \t]*(?P<name>" + _TOKEN + r"(?:[ \t]+" + _TOKEN + r")?)"
                r"[ \t]*(?=\n[> \t]*(?:\n|\Z)|\Z)"
            ),
            True,
        ),
        (
            re.compile(r"(?m)^[> \t]*(?P<name>" + _TOKEN + r"(?:[ \t]+" + _TOKEN + r")?)[ \t]*$"),
            False,
        ),
        # Name fields of tax forms: "first name and middle initial X", "RECIPIENT'S name X".
        (
            re.compile(
                r"(?i:\b(?:first[ \t]+name(?:[ \t]+and[ \t]+(?:middle[ \t]+)?initial)?|"
                r"last[ \t]+name|(?:recipient|employee|payee|borrower|student|"
                r"taxpayer|spouse)'?s[ \t]+(?:full[ \t]+)?name))[ \t]*:?[ \t]+"
                r"(?P<name>" + _NAMES_1_3 + r")"
            ),
            True,
        ),
        # "Wójcik, Oleksandr L", "Summers, Dawn T": with a middle initial the form itself says
        # "Last, First M", so words that are also names count ("Short, Guy T"); without one
        # ("Vu, Loc") every word must be a name and one by its own strength. Then "Meiling Y.".
        (
            re.compile(
                r"(?<![\w,])(?P<name>[A-Z][\w'\u2019-]+,[ \t]+[A-Z][\w'\u2019-]+[ \t]+[A-Z]\.?)"
                r"(?=[ \t]+(?:re\b|called|about|regarding|-)|[ \t]*(?:[,;:)\n]|$))"
            ),
            True,
        ),
        (
            re.compile(
                r"(?<![\w,])(?P<name>[^\W\d_][\w'\u2019-]+,[ \t]+[^\W\d_][\w'\u2019-]+"
                r"(?:[ \t]+[A-Z]\.?)?)(?![\w-])"
            ),
            False,
        ),
        (re.compile(r"(?<![\w.])(?P<name>[A-Z][\w'\u2019-]+[ \t]+[A-Z]\.)(?=[\s,;:!?)]|$)"), False),
        # A vocative closing a sentence: "within the hour, chinwe."
        (re.compile(r",[ \t]+(?P<name>[^\W\d_][\w'-]+)[ \t]*[.!?](?=\s|$)"), False),
    ]

    def __init__(self, gazetteer: NameGazetteerRecognizer) -> None:
        super().__init__(supported_entities=[self.ENTITY], name="NamePositionRecognizer")
        self.gazetteer = gazetteer

    def load(self) -> None:
        return None

    def _take(self, words: list[str], sufficient: bool) -> int:
        """How many leading words of a candidate are a name (0: none)."""
        taken, strong = 0, False
        for word in words:
            bare = word.rstrip(".,")
            if len(bare) == 1 and bare.isalpha() and taken:
                taken += 1  # an initial
                continue
            strength = self.gazetteer.strength(bare)
            if strength == 0 and sufficient and self.gazetteer.named_in_place(bare):
                strength = 1  # "Hi Will,", "Thu (Tax Pro):", "Last name Do"
            if strength == 0:
                break
            strong = strong or strength == 2
            taken += 1
        if taken and not sufficient and not strong:
            return 0
        return taken

    def analyze(self, text, entities, nlp_artifacts=None):
        if self.ENTITY not in entities:
            return []
        results = []
        for pattern, sufficient in self.POSITIONS:
            if sufficient == "right" and "<" not in text:
                continue  # the quoted reply's author pattern, anchored on "<x@y>", is costly
            position = 0
            while (match := pattern.search(text, position)) is not None:
                # Matches may overlap ("first name X Last name Y"): go on after the name's
                # first word, not after the whole match.
                start = match.start("name")
                candidate = match.group("name")
                if start and (text[start - 1].isalnum() or text[start - 1] in "'\u2019-"):
                    position = start + 1
                    continue  # inside a word ("upport" of "Support <support@...")
                # A candidate that is no name may open the next position ("... initial Last
                # name MARK LOVE"): go on from where it starts, not past it.
                position = max(start, match.start() + 1)
                words = candidate.replace(",", " ").split()
                if sufficient == "right":
                    while words and self.gazetteer.strength(words[0].rstrip(".,")) == 0:
                        start = text.index(words[0], start) + len(words[0])
                        start += len(text[start:]) - len(text[start:].lstrip())
                        words.pop(0)
                    taken = self._take(words, True) if words else 0
                elif sufficient is None:
                    taken = (
                        0
                        if words[0].lower() in LABELS or words[0].lower() in TAX_WORDS
                        else len(words)
                    )
                elif not sufficient:
                    # Every word of a weak position must be a name or an initial.
                    if self._take(words, sufficient) < len(words):
                        continue
                    taken = len(words)
                else:
                    taken = self._take(words, sufficient)
                if not taken:
                    continue
                end = start
                for word in words[:taken]:
                    end = text.index(word, end) + len(word)
                span = text[start:end].rstrip(".,")
                if span:
                    # A city before its state ("Tyler, TX") is dropped with every PERSON
                    # finding in the scanner's resolution (PLACE_AFTER).
                    results.append(
                        found(
                            self.name,
                            self.ENTITY,
                            start,
                            start + len(span),
                            0.7,
                            "name by position",
                            by_structure=sufficient is None or sufficient is True,
                        )
                    )
        return results


@functools.cache
def country_names() -> frozenset[str]:
    """Names of the world's countries (ISO 3166 through pycountry), folded to lower case."""
    import pycountry

    names = set()
    for country in pycountry.countries:
        for attribute in ("name", "common_name", "official_name"):
            value = getattr(country, attribute, None)
            if value:
                names.add(_fold(value).lower())
                names.add(_fold(value.split(",")[0]).lower())
    return frozenset(names)


_REGION = re.compile(
    r"(?i)^(?:(?:southern|northern|eastern|western|central|north|south|east|west)\s+)?"
)


def is_country(span: str) -> bool:
    """ "France", "Southern Tunisia", "United Kingdom": a country, not a person."""
    written = _fold(" ".join(span.split())).lower()
    return written in country_names() or _REGION.sub("", written) in country_names()


# Where a place, not a person, is named: "grew up in Shelly Park", "flew to Reguengos",
# "originally from Mavčiče", "the University of Nicosia", "Where: Novo mesto".
PLACE_BEFORE = re.compile(
    r"(?i)(?:\bgrew[ \t]+up[ \t]+in|\b(?:travel+ing|travel+ed|moved|moving|returned|flew|"
    r"flying|drove|driving|relocated|relocating|arrived)[ \t]+(?:back[ \t]+)?(?:to|in|at)|"
    r"\b(?:i[ \t]+am|i'm|we[ \t]+are|currently|based|located|living|lives?|lived)[ \t]+in|"
    r"\boriginally[ \t]+from|\bhome[ \t]+(?:city|town)|\buniversity[ \t]+of|\bcity[ \t]+of|"
    r"\bwhere[ \t]*:|\bvisit(?:ing|ed)?)[ \t]+$"
)
# A name followed by a state's code is a city: "Tyler, TX", "Fort Lee, NJ 07024".
PLACE_AFTER = re.compile(
    r",?[ \t]+(?:AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|"
    r"MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|"
    r"UT|VT|VA|WA|WV|WI|WY|DC|PR)\b"
)


class StructureRecognizer(LocalRecognizer):
    """Values of pasted tables and JSON objects, typed by their column header or key
    (`governance.pii.structure`)."""

    def __init__(self, gazetteer: NameGazetteerRecognizer) -> None:
        super().__init__(
            supported_entities=sorted(set(HEADERS.values())), name="StructureRecognizer"
        )
        self.gazetteer = gazetteer

    def load(self) -> None:
        return None

    def _is_name(self, cell: str) -> bool:
        words = cell.split()
        if not 1 <= len(words) <= 4 or not all(
            w.replace("-", "").replace("'", "").isalpha() for w in words
        ):
            return False
        strengths = [self.gazetteer.strength(w) for w in words]
        return min(strengths) > 0 and max(strengths) == 2

    def analyze(self, text, entities, nlp_artifacts=None):
        return [
            found(
                self.name,
                cell.entity_type,
                cell.start,
                cell.end,
                0.8,
                "by column",
                by_structure=True,
            )
            for cell in find_cells(text, self._is_name)
            if cell.entity_type in entities
        ]


_STREET_KINDS = frozenset(w.lower().rstrip(".") for w in re.findall(r"[A-Za-z]+", STREET_SUFFIX))


def names_street_kind(text: str) -> bool:
    """Whether a word of the text is a street kind the postal service knows ("Ave", "st")."""
    return any(w.lower() in _STREET_KINDS for w in re.findall("[A-Za-z]+", text))


_ADDRESS_START = re.compile(r"(?<![\w$.,/-])(?=\d{1,6}[A-Za-z]?[ \t]+[A-Za-z0-9])")
_STREET_PART = frozenset(
    {
        "AddressNumber",
        "StreetNamePreDirectional",
        "StreetNamePreType",
        "StreetNamePreModifier",
        "StreetName",
        "StreetNamePostType",
        "StreetNamePostDirectional",
        "OccupancyType",
        "OccupancyIdentifier",
        "SubaddressType",
        "SubaddressIdentifier",
    }
)
_PLACE_PART = frozenset({"PlaceName", "StateName", "ZipCode"})


class AnyCaseAddressRecognizer(LocalRecognizer):
    """US street lines in any case ("12246 115TH AVE", "11495 n verde way"), parsed by the
    trained CRF of `usaddress`: a house number, one to three words of street name and a street
    kind the postal service knows, then units, city, state and ZIP where they follow."""

    ENTITY = "STREET_ADDRESS"

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.ENTITY], name="AnyCaseAddressRecognizer")
        import usaddress

        self.parse = usaddress.parse

    def load(self) -> None:
        return None

    def analyze(self, text, entities, nlp_artifacts=None):
        if self.ENTITY not in entities:
            return []
        results: list[RecognizerResult] = []
        if not names_street_kind(text):
            return results  # no street kind anywhere: no line can be accepted
        for match in _ADDRESS_START.finditer(text):
            start = match.start()
            line_end = text.find("\n", start)
            candidate = text[start : min(start + 80, len(text) if line_end < 0 else line_end)]
            end = self._street_end(candidate)
            if end:
                if StreetAddressRecognizer.REFERENCE_BEFORE.search(
                    text[max(0, start - 16) : start]
                ):
                    continue
                results.append(
                    found(self.name, self.ENTITY, start, start + end, 0.7, "usaddress street line")
                )
        return results

    def _street_end(self, candidate: str) -> int:
        """Where the address in `candidate` ends (0: no street line at its start)."""
        if StreetAddressRecognizer.TAX_REFERENCE.match(candidate):
            return 0
        # Parsing costs a CRF pass: only a line naming a street kind can be accepted.
        if not names_street_kind(candidate):
            return 0
        try:
            tagged = self.parse(candidate)
        except Exception:
            return 0
        if len(tagged) < 3 or tagged[0][1] != "AddressNumber":
            return 0
        names = 0
        kind = False
        position = 0
        end = 0
        for token, label in tagged:
            position = candidate.find(token, position)
            if position < 0:
                return 0
            if label == "StreetName":
                names += 1
                if names > 3:
                    return 0
            elif label == "StreetNamePostType":
                if token.rstrip(".,").lower() not in _STREET_KINDS or not names:
                    return 0
                kind = True
            elif label in _PLACE_PART and kind:
                pass
            elif label not in _STREET_PART:
                break
            position += len(token)
            end = position
        return len(candidate[:end].rstrip(" ,")) if kind else 0


# --- a name's other half -------------------------------------------------------------------

_NEIGHBOUR_AFTER = re.compile(r"[ \t]([^\W\d_][\w'\u2019-]*[^\W\d_])")
_NEIGHBOUR_BEFORE = re.compile(r"(?<![\w'\u2019-])([^\W\d_][\w'\u2019-]*[^\W\d_])[ \t]$")


def _same_case(word: str, other: str) -> bool:
    if other.isupper() and len(other) > 1:
        return word.isupper()
    if other.islower():
        return word.islower()
    return word[:1].isupper() and not word.isupper()


def completes_a_name(word: str, gazetteer: NameGazetteerRecognizer) -> bool:
    """A word that says little alone but completes a name beside it ("Han", "Le", "Su"):
    among some country's 1,000 commonest names, no everyday English word, label, tax word,
    month or day. A hyphenated word is judged as one ("Ha-Won" is a name, "follow-up" not)."""
    if "-" in word:
        return gazetteer.strength(word) > 0
    lowered = _fold(word).lower()
    return (
        len(lowered) >= 2
        and lowered not in STOP_WORDS
        and lowered not in LABELS
        and lowered not in TAX_WORDS
        and lowered not in MONTHS_AND_DAYS
        and lowered not in ADDRESSED_GROUPS
        and lowered not in EMPTY_VALUES
        and lowered not in common_words()
        and gazetteer.lexicon.rank_tier(lowered) == 1
    )


def name_neighbours(
    text: str, spans: list[tuple[int, int, str]], gazetteer: NameGazetteerRecognizer
) -> list[tuple[int, int]]:
    """Words right beside a found name that complete it: "Yeon-In Han", "seungyoon han",
    "LE VAN MAI". Such a word says little alone: "Han", "Le" and "Su" are Spanish words as
    well as some of the commonest Korean, Chinese and Vietnamese surnames, so the scanner never
    takes them for names on their own. Beside a name, written in the same case, a word counts
    when it is among some country's 1,000 commonest names and no everyday English word, no
    label, tax word, month or day. Up to two words on each side; the answer is the (start,
    end) of each added word."""
    added: list[tuple[int, int]] = []
    taken = [(s, e) for s, e, _ in spans]

    def fits(word: str, beside: str) -> bool:
        return _same_case(word, beside) and completes_a_name(word, gazetteer)

    for start, end, entity in spans:
        if entity != "PERSON":
            continue
        words = text[start:end].split()
        if not words:
            continue
        first, last = words[0], words[-1]
        right = end
        for _ in range(2):
            match = _NEIGHBOUR_AFTER.match(text, right)
            if not match or any(s <= match.start(1) < e for s, e in taken):
                break
            if not fits(match.group(1), last) or text[match.end() : match.end() + 1] in ("@", "."):
                break
            added.append((match.start(1), match.end(1)))
            right, last = match.end(1), match.group(1)
        left = start
        for _ in range(2):
            match = _NEIGHBOUR_BEFORE.search(text, max(0, left - 40), left)
            if not match or any(s < match.end(1) <= e for s, e in taken):
                break
            opening = _SENTENCE_END.search(text, max(0, match.start(1) - 8), match.start(1))
            if not fits(match.group(1), first) or opening:
                break
            added.append((match.start(1), match.end(1)))
            left, first = match.start(1), match.group(1)
    return added


# --- the same person named again in one record ---------------------------------------------

_WORD_RUN = re.compile(r"[^\W\d_][\w'\u2019-]*")
# Local parts of shared mailboxes: they name a role, not a person.
ROLE_MAILBOXES = frozenset(
    """support info admin noreply no reply donotreply help billing contact team office mail
    sales service services hello tax taxes accounts accounting payroll hr careers jobs news
    notifications alerts security privacy legal compliance webmaster postmaster customer
    customers client clients care refunds returns efile irs agent desk inbox mailer""".split()
)
_SENTENCE_END = re.compile(r"(?:^|[.!?:;\n\"“(\[])[ \t>]*$")


def _key(word: str) -> str:
    return _fold(word).lower().replace("-", "").replace("'", "").replace("\u2019", "")


def coreferences(
    text: str, spans: list[tuple[int, int, str]], gazetteer: NameGazetteerRecognizer
) -> list[tuple[int, int]]:
    """Other mentions, in the same record, of people the findings name.

    A name found once tells where else it appears: "Roodly Fils-Aimé <...> wrote:" is found
    in its quoted header, and the same record's "> roodly" sign-off is the same person. So is
    a word that an e-mail address of the record spells ("rfilsaime@aol.com" beside
    "Fils-Aimé"). A word that is no everyday English word counts in any case and any place;
    one that is ("Will", "Rose") only as written where it was found, capitalized and not
    opening a sentence, or alone on its line, or closing a sentence after a comma ("within
    the hour, rose."). `spans` are (start, end, entity type) of the record's findings; the
    answer is the (start, end) of each new PERSON mention.
    """
    names: dict[str, set[str]] = {}
    mailbox_words: set[str] = set()
    mailboxes: list[str] = []
    for start, end, entity in spans:
        if entity == "PERSON":
            for match in _WORD_RUN.finditer(text, start, end):
                word = match.group()
                if word.islower() and _fold(word) in spanish_only_words():
                    continue  # "lo mando mañana": Spanish, whatever a finding said
                if len(_key(word)) >= 3 and (
                    gazetteer.strength(word) > 0
                    or (word[:1].isupper() and completes_a_name(word, gazetteer))
                ):
                    names.setdefault(_key(word), set()).add(word)
        elif entity == "EMAIL_ADDRESS":
            local = _fold(text[start:end].split("@", 1)[0]).lower()
            pieces = [p for p in re.split(r"[._+\-\d]+", local) if len(p) >= 3]
            if not pieces or any(p in ROLE_MAILBOXES for p in pieces):
                continue
            mailbox_words.update(pieces)
            mailboxes.append("".join(pieces))
    if not names and not mailbox_words:
        return []
    covered = sorted((s, e) for s, e, _ in spans)
    found: list[tuple[int, int]] = []
    for match in _WORD_RUN.finditer(text):
        word = match.group().rstrip("'\u2019-")
        start, end = match.start(), match.start() + len(word)
        key = _key(word)
        if len(key) < 3 or any(s < end and start < e for s, e in covered):
            continue
        if key in names:
            forms = names[key]
        elif key in mailbox_words or (
            len(key) >= 4 and any(m.endswith(key) and len(m) - len(key) <= 2 for m in mailboxes)
        ):
            forms = set()
        else:
            continue
        lowered = _fold(word).lower()
        if word.islower() and lowered in spanish_only_words():
            continue
        if gazetteer.strength(word) == 0 and not forms:
            continue  # a mailbox word that is a label or stop word ("the", "tax")
        if lowered in STOP_WORDS or lowered in LABELS or lowered in TAX_WORDS:
            continue
        if is_english_word(lowered) or lowered in spanish_words():
            before = text[max(0, start - 40) : start]
            after = text[end : end + 3]
            alone = re.search(r"(?:^|\n)[> \t]*$", before) and re.match(r"[ \t]*(?:\n|$)", after)
            vocative = before.endswith(", ") and re.match(r"[.!?]", after)
            written = word in forms or (not forms and word[:1].isupper())
            if not (
                alone
                or vocative
                or (written and word[:1].isupper() and not _SENTENCE_END.search(before))
            ):
                continue
        found.append((start, end))
    return found
