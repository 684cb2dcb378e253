"""A detection view of a text, with every character mapped back to where it came from.

People write identifiers in more ways than any one pattern knows: digit by digit in words
("five three one"), split across a line break, with the e-mail's "@" spelled "at", a year as
"nineteen ninety eight", a name in lower case. Rather than teach each recognizer each variant,
the scanner runs every recognizer once on a *normalized* view in which these variants are
written the usual way, and maps each finding back to the span of the original text it covers.

Each pass rewrites some stretches of the text; `View` keeps, for every character of the view,
the start and end of the original text it stands for, so a finding on the view covers exactly
the original characters it was made from (a spelled "seven" found as "7" redacts "seven").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
UNITS = {k: int(v) for k, v in DIGIT_WORDS.items() if k not in ("zero", "oh")}


@dataclass(frozen=True)
class View:
    """A rewritten text and, per character, the original [start, end) it stands for."""

    text: str
    starts: tuple[int, ...] | None  # None: the view is the original, character for character
    ends: tuple[int, ...] | None

    @classmethod
    def of(cls, text: str) -> View:
        return cls(text, None, None)

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The original span that view characters [start, end) were made from."""
        if self.starts is None or self.ends is None:
            return start, end
        if end <= start:
            position = self.starts[start] if start < len(self.starts) else self._tail()
            return position, position
        return self.starts[start], self.ends[end - 1]

    def _tail(self) -> int:
        return self.ends[-1] if self.ends else 0

    def rewrite(self, edits: Iterable[tuple[int, int, str]]) -> View:
        """Apply non-overlapping (start, end, replacement) edits given in view coordinates."""
        edits = sorted(edits)
        if not edits:
            return self
        pieces: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        position = 0
        for start, end, replacement in edits:
            if start < position:
                continue  # overlapping edit: the first one wins
            pieces.append(self.text[position:start])
            for i in range(position, start):
                s, e = self.original(i, i + 1)
                starts.append(s)
                ends.append(e)
            s, e = self.original(start, end)
            pieces.append(replacement)
            starts.extend([s] * len(replacement))
            ends.extend([e] * len(replacement))
            position = end
        pieces.append(self.text[position:])
        for i in range(position, len(self.text)):
            s, e = self.original(i, i + 1)
            starts.append(s)
            ends.append(e)
        return View("".join(pieces), tuple(starts), tuple(ends))


# --- spelled numbers ---------------------------------------------------------------------

_ALL_NUMBER_WORDS = sorted([*DIGIT_WORDS, *TEENS, *TENS], key=len, reverse=True)
_WORD = r"(?:" + "|".join(_ALL_NUMBER_WORDS) + r")"
_YEAR = re.compile(
    r"(?i)\b(?:(?P<century>" + "|".join(["nineteen", "eighteen", "twenty"]) + r")[\s-]+"
    r"(?:(?P<tens>" + "|".join(TENS) + r")(?:[\s-]+(?P<unit>" + "|".join(UNITS) + r"))?"
    r"|(?P<teen>" + "|".join(TEENS) + r")"
    r"|(?:oh|o|zero)[\s-]+(?P<ounit>" + "|".join(UNITS) + r"))"
    r"|two[\s-]+thousand(?:[\s-]+and)?(?:[\s-]+(?:(?P<ttens>" + "|".join(TENS) + r")"
    r"(?:[\s-]+(?P<tunit>" + "|".join(UNITS) + r"))?|(?P<tteen>" + "|".join(TEENS) + r")"
    r"|(?P<tone>" + "|".join(UNITS) + r")))?)\b"
)
# Two or more digit words in a row ("five three one", "double four"): an identifier read out.
_DIGIT_SEQUENCE = re.compile(
    r"(?i)\b(?:(?:double|triple)[ \t]+)?(?:" + "|".join(DIGIT_WORDS) + r")"
    r"(?:(?:[ \t]*[,-][ \t]*|[ \t]+|[ \t]+dash[ \t]+)(?:(?:double|triple)[ \t]+)?"
    r"(?:" + "|".join(DIGIT_WORDS) + r")\b){1,}"
)
_DIGIT_TOKEN = re.compile(
    r"(?i)(?P<mult>double|triple)?[ \t]*(?P<digit>" + "|".join(DIGIT_WORDS) + r")\b"
    r"|(?P<sep>[ \t]*(?:,|-|\bdash\b)[ \t]*)"
)


def _year_value(match: re.Match[str]) -> str | None:
    groups = {k: (v.lower() if v else None) for k, v in match.groupdict().items()}
    if groups["century"]:
        century = {"nineteen": 19, "eighteen": 18, "twenty": 20}[groups["century"]] * 100
        if groups["tens"]:
            return str(century + TENS[groups["tens"]] + UNITS.get(groups["unit"] or "", 0))
        if groups["teen"]:
            return str(century + TEENS[groups["teen"]])
        return str(century + UNITS[groups["ounit"]])
    value = 2000
    if groups["ttens"]:
        value += TENS[groups["ttens"]] + UNITS.get(groups["tunit"] or "", 0)
    elif groups["tteen"]:
        value += TEENS[groups["tteen"]]
    elif groups["tone"]:
        value += UNITS[groups["tone"]]
    return str(value)


def spelled_numbers(view: View) -> View:
    """Write spelled years and read-out digit sequences as digits."""
    text = view.text
    if not re.search(r"(?i)\b" + _WORD + r"\b", text):
        return view
    edits: list[tuple[int, int, str]] = []
    taken: list[tuple[int, int]] = []
    for match in _YEAR.finditer(text):
        value = _year_value(match)
        if value:
            edits.append((match.start(), match.end(), value))
            taken.append(match.span())
    for match in _DIGIT_SEQUENCE.finditer(text):
        if any(a < match.end() and match.start() < b for a, b in taken):
            continue
        out = []
        for token in _DIGIT_TOKEN.finditer(match.group()):
            if token.group("digit"):
                times = {"double": 2, "triple": 3}.get((token.group("mult") or "").lower(), 1)
                out.append(DIGIT_WORDS[token.group("digit").lower()] * times)
            elif token.group("sep"):
                out.append("-")
        digits = "".join(out).strip("-")
        # "one or two", "two-thirds": a lone pair of words is prose, not an identifier.
        if sum(c.isdigit() for c in digits) >= 3:
            edits.append((match.start(), match.end(), digits))
    return view.rewrite(edits)


# --- e-mail addresses with "at" and "dot" spelled out ------------------------------------

_AT = r"(?:[ \t]*[\[\(\{<][ \t]*at[ \t]*[\]\)\}>][ \t]*|[ \t]+at[ \t]+|[ \t]*@[ \t]*)"
_DOT = r"(?:[ \t]*[\[\(\{<][ \t]*dot[ \t]*[\]\)\}>][ \t]*|[ \t]+dot[ \t]+|\.)"
_OBFUSCATED_EMAIL = re.compile(
    r"(?i)(?P<local>[a-z0-9][a-z0-9._%+-]*(?:" + _DOT + r"[a-z0-9._%+-]+)*)"
    r"(?P<at>" + _AT + r")"
    r"(?P<domain>[a-z0-9][a-z0-9-]*(?:" + _DOT + r"[a-z0-9-]+)+)"
)
_SPELLED_DOT = re.compile(r"(?i)[ \t]*[\[\(\{<][ \t]*dot[ \t]*[\]\)\}>][ \t]*|[ \t]+dot[ \t]+")


def email_obfuscations(view: View, is_domain: Callable[[str], bool]) -> View:
    """Write "jane at example dot com" and "jane[at]example[dot]com" as an address."""
    text = view.text
    lowered = text.lower()
    if "at" not in lowered and "@" not in lowered:
        return view
    edits = []
    position = 0
    while match := _OBFUSCATED_EMAIL.search(text, position):
        domain = _SPELLED_DOT.sub(".", match.group("domain"))
        if not is_domain(domain):
            # "me at jane dot doe at gmail dot com": the address may start further on.
            position = match.start("domain")
            continue
        position = match.end()
        if match.group("at").strip() == "@" and "dot" not in match.group().lower():
            continue  # an ordinary address: nothing to rewrite
        edits.extend(_piecewise(match))
    return view.rewrite(edits)


# --- quoted lines a mail client wrapped -----------------------------------------------------

_QUOTED_WRAP = re.compile(r"(?<=[^\W\d_])\n(?P<prefix>(?:>[ \t]?)+)(?=[^\W\d_])")
WRAP_WIDTH = 30


def quoted_wraps(view: View) -> View:
    """Join a quoted line that a mail client wrapped mid-sentence to the next one ("the
    contractor as Rich\n> Price with TIN" reads "Rich Price"): a name cut by the wrap is one
    name again. Only where a long line ends in a letter and the next quoted line goes on with
    one; a short line (a sign-off: "> Best"), punctuation, or pasted rows (commas, tabs) keep
    their line breaks."""
    text = view.text
    if "\n>" not in text:
        return view
    edits = []
    for match in _QUOTED_WRAP.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        line = text[line_start : match.start()]
        if not line.startswith(">"):
            continue
        content = line.lstrip("> \t")
        next_end = text.find("\n", match.end())
        following = text[match.end() : next_end if next_end >= 0 else len(text)]
        if len(content) < WRAP_WIDTH or any(
            "\t" in part or part.count(",") >= 2 or "|" in part for part in (content, following)
        ):
            continue
        edits.append((match.start(), match.end(), " "))
    return view.rewrite(edits)


def _piecewise(match: re.Match[str]) -> list[tuple[int, int, str]]:
    """Edits that turn the matched obfuscation into local@domain, one per separator, so the
    characters of the names themselves keep their one-to-one mapping."""
    edits = []
    for name in ("local", "domain"):
        start = match.start(name)
        for sep in _SPELLED_DOT.finditer(match.group(name)):
            edits.append((start + sep.start(), start + sep.end(), "."))
    edits.append((match.start("at"), match.end("at"), "@"))
    return edits


# --- line breaks and read-out spacing inside digit runs ----------------------------------

# A digit group, a line break (with the quote markers and spaces chat tools add), then more
# digits: one value broken over two lines; not a line that opens with a form's box number
# and its label ("34619\n1 Wages, tips").
_BROKEN_RUN = re.compile(
    r"(?<=\d)([-./]?)[ \t]*\r?\n[ \t>]*(?=[-./]?\d)(?!\d{1,3}[a-z]?[ \t]+[^\W\d_])"
)
# Single digits separated by single spaces: "5 3 1 4 4 2 9 0 7".
_SPACED_DIGITS = re.compile(r"(?<![\w.,-])\d(?:[ \t]\d){5,}(?![\w])")


def digit_runs(view: View) -> View:
    """Join digit groups broken over lines, and digits read out one by one."""
    text = view.text
    edits: list[tuple[int, int, str]] = []
    if "\n" in text:
        for match in _BROKEN_RUN.finditer(text):
            edits.append((match.start(), match.end(), match.group(1) or " "))
        view = view.rewrite(edits)
        text = view.text
        edits = []
    for match in _SPACED_DIGITS.finditer(text):
        start = match.start()
        for offset, char in enumerate(match.group()):
            if not char.isdigit():
                edits.append((start + offset, start + offset + 1, ""))
    return view.rewrite(edits)


# --- letter case -------------------------------------------------------------------------

# Words after which a name usually follows: who someone is to the writer or to the return.
PERSON_CUE_WORDS = (
    r"client|customer|taxpayer|spouse|husband|wife|son|daughter|mom|mother|dad|father|"
    r"brother|sister|boss|manager|employee|employer|tenant|landlord|dependent|dependant|"
    r"nephew|niece|grandson|granddaughter|grandmother|grandfather|partner|preparer|"
    r"accountant|cpa|account[ \t]+holder|beneficiary|payee|recipient|cardholder|co-?signer|"
    r"signer|applicant|member|contact|sender|caller|agent|rep|representative"
)
_STRONG_CUE = re.compile(
    r"(?i)(?:\b(?:my|his|her|our|their|the)[ \t]+(?:" + PERSON_CUE_WORDS + r")(?:'s)?"
    r"(?:[ \t]+(?:full[ \t]+)?name)?(?:[ \t]+is)?[ \t]*[,:-]?"
    r"|\b(?:" + PERSON_CUE_WORDS + r")(?:[ \t]+(?:full[ \t]+)?name)?[ \t]*:"
    r"|\bmy[ \t]+name[ \t]+is|\bname[ \t]*:|\bdear|\battn:?|\bfrom:|\bcc:|\bsigned:?"
    r"|\b(?:regards|thanks|sincerely|cheers|best)[ \t]*,[ \t]*\n?)"
    r"(?=[ \t]*[^\W\d_])"
)
_IBAN_LOWER = re.compile(r"\b[a-z]{2}\d{2}(?:[ ]?[a-z0-9]{4}){2,7}(?:[ ]?[a-z0-9]{1,4})?\b")
_WORDS = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")


class NameWords(Protocol):
    """What letter_case needs to know about a word (given in lower case)."""

    def is_uncommon_name(self, lowered: str) -> bool: ...

    def is_name_word(self, lowered: str) -> bool: ...

    def is_english_word(self, lowered: str) -> bool: ...

    def is_first_name(self, lowered: str) -> bool: ...

    stop_words: frozenset[str]


def letter_case(view: View, names: NameWords, acronyms: frozenset[str]) -> View:
    """Upper-case IBANs written in lower case; write names in lower or upper case as names.

    A text mostly in capitals is read in lower case except for known acronyms. Then, so that
    spaCy's NER and the name recognizers, which lean on case, see a name: a run of two or more
    lower-case words that are all known names (and no everyday words) is capitalized, and so
    are up to three words after a cue such as "my client" or "account holder:" that are names
    or no dictionary words ("my client oluwaseun adebayo").
    """
    text = view.text
    edits: list[tuple[int, int, str]] = []
    for match in _IBAN_LOWER.finditer(text):
        edits.append((match.start(), match.end(), match.group().upper()))
    if edits:
        view = view.rewrite(edits)
        text = view.text
        edits = []
    words = list(_WORDS.finditer(text))
    letters = [w.group() for w in words if len(w.group()) > 1]
    upper = sum(w.isupper() for w in letters)
    if letters and len(letters) >= 4 and upper / len(letters) > 0.6:
        for word in words:
            token = word.group()
            lowered = token.lower()
            if token.isupper() and token not in acronyms and len(lowered) == len(token):
                edits.append((word.start(), word.end(), lowered))
        view = view.rewrite(edits)
        text = view.text
        words = list(_WORDS.finditer(text))
        edits = []
    capitalize: dict[int, re.Match[str]] = {}
    run: list[re.Match[str]] = []

    def close() -> None:
        if len(run) >= 2:
            for word in run:
                capitalize[word.start()] = word
        run.clear()

    previous_end = -1
    for word in words:
        token = word.group()
        adjacent = previous_end >= 0 and text[previous_end : word.start()] in (" ", "\t")
        if token.islower() and names.is_uncommon_name(token):
            if run and not adjacent:
                close()
            run.append(word)
        else:
            close()
        previous_end = word.end()
    close()
    if _STRONG_CUE.search(text):
        by_start = {w.start(): index for index, w in enumerate(words)}
        for cue in _STRONG_CUE.finditer(text):
            position = cue.end()
            while position < len(text) and text[position] in " \t\n>":
                position += 1
            index = by_start.get(position)
            following = words[index : index + 3] if index is not None else []
            for taken, word in enumerate(following):
                token = word.group()
                shouted = token.isupper() and len(token) > 1 and token not in acronyms
                if word.start() != position or not (token.islower() or shouted):
                    break
                lowered = token.lower()
                # After the cue the first word may be any first name ("mark", "joy"), the
                # next ones any known name ("flowers"); words in no dictionary always count.
                if lowered in names.stop_words or not (
                    names.is_uncommon_name(lowered)
                    or not names.is_english_word(lowered)
                    or (names.is_first_name(lowered) if taken == 0 else names.is_name_word(lowered))
                ):
                    break
                capitalize[word.start()] = word
                position = word.end() + 1
    for word in capitalize.values():
        token = word.group()
        written = token.capitalize() if token.isupper() else token[:1].upper() + token[1:]
        if len(written) == len(token):
            edits.append((word.start(), word.end(), written))
    return view.rewrite(edits)
