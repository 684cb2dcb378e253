"""PII benchmarks for BENCHMARKS.md: quality on the shared corpus and on a Faker tax corpus,
and throughput beside Presidio's default AnalyzerEngine with the same spaCy model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from governance.pii.rules import load_rules
from governance.pii.scanner import Scanner
from governance.pii.synthetic import generate

STRUCTURED_IDS = (
    "US_SSN",
    "US_ITIN",
    "US_EIN",
    "US_BANK_NUMBER",
    "ABA_ROUTING_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
)


def corpus_scores(scanner: Scanner, rules, records: list[dict]) -> dict[str, Any]:
    """Recall per type and per form, and precision, on labelled records (score.py's rule: a
    span is found when findings cover half its characters; a finding touching no span is a
    false positive)."""
    import collections

    found = list(scanner.scan_texts([r["text"] for r in records], rules))
    by_form: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
    false_positives: collections.Counter = collections.Counter()
    findings = 0
    for record, hits in zip(records, found, strict=True):
        for start, end, entity, form in record["spans"]:
            covered: set[int] = set()
            for f in hits:
                covered.update(range(max(start, f.start), min(end, f.end)))
            by_form[(entity, form)][0] += len(covered) * 2 >= end - start
            by_form[(entity, form)][1] += 1
        for f in hits:
            findings += 1
            if not any(f.start < e and s < f.end for s, e, _t, _f in record["spans"]):
                false_positives[f.entity_type] += 1
    by_type: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for (entity, _form), (hit, total) in by_form.items():
        by_type[entity][0] += hit
        by_type[entity][1] += total
    hit = sum(h for h, _ in by_type.values())
    total = sum(t for _, t in by_type.values())
    return {
        "recall": hit / total,
        "precision": 1 - sum(false_positives.values()) / max(findings, 1),
        "by_type": {k: v for k, v in sorted(by_type.items())},
        "by_form": {k: v for k, v in sorted(by_form.items())},
        "false_positives": dict(false_positives),
        "spans": total,
    }


def run_corpus_bench(scanner: Scanner, rules, seeds=(41, 42), count: int = 1500) -> str:
    """The support-ticket corpus of benchmarks/pii_corpus.py (no scanner code), two seeds."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.pii_corpus import generate as support_records

    lines = []
    forms: dict[tuple[str, str], list[int]] = {}
    for seed in seeds:
        result = corpus_scores(scanner, rules, list(support_records(count, seed)))
        ids = min(result["by_type"][t][0] / result["by_type"][t][1] for t in STRUCTURED_IDS)
        person = result["by_type"]["PERSON"]
        lines.append(
            f"| {seed} | {result['spans']} | {result['recall']:.3f} | {ids:.3f} | "
            f"{person[0] / person[1]:.3f} | {result['precision']:.3f} |"
        )
        for key, (hit, total) in result["by_form"].items():
            forms.setdefault(key, [0, 0])
            forms[key][0] += hit
            forms[key][1] += total
    form_rows = [
        f"| {entity} | {form} | {hit}/{total} | {hit / total:.3f} |"
        for (entity, form), (hit, total) in sorted(forms.items())
    ]
    return "\n".join(
        [
            f"Support-ticket corpus (`benchmarks/pii_corpus.py`: tickets, chats and notes with "
            f"values written the ways the issue lists; it shares no code with the scanner or its "
            f"canaries), {count} records per seed, consumer-tax rules:",
            "",
            "| seed | PII spans | recall | worst structured id type | PERSON | precision |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
            *lines,
            "",
            "<details><summary>Recall per type and form, both seeds</summary>",
            "",
            "| type | form | found | recall |",
            "| --- | --- | ---: | ---: |",
            *form_rows,
            "",
            "</details>",
        ]
    )


def cold_start_seconds() -> float:
    """CPU seconds for a fresh process to import, build the scanner and scan one record."""
    script = (
        "import time; t = time.process_time()\n"
        "from governance.config import DEFAULT_POLICY_DIR\n"
        "from governance.pii.rules import load_rules\n"
        "from governance.pii.scanner import Scanner\n"
        "list(Scanner().scan_texts(['My SSN is 536-22-8741'], load_rules(DEFAULT_POLICY_DIR)))\n"
        "print(time.process_time() - t)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


COUNTED = {
    "PERSON",
    "STREET_ADDRESS",
    "CREDIT_CARD",
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "US_DRIVER_LICENSE",
}


def shared_gold(source: Path) -> list[dict[str, Any]]:
    """Convert presidio-research's synth_dataset_v2.json to GOLD lines, keeping counted types."""
    items = json.loads(source.read_text())
    return [
        {
            "text": item["full_text"],
            "spans": [
                [s["start_position"], s["end_position"], s["entity_type"]]
                for s in item["spans"]
                if s["entity_type"] in COUNTED
            ],
        }
        for item in items
    ]


def score(score_py: Path, gold: list[dict], findings: list[dict], workdir: Path) -> dict:
    """Score findings with the shared scorer, as the product is judged."""
    gold_path, found_path = workdir / "gold.jsonl", workdir / "found.jsonl"
    gold_path.write_text("".join(json.dumps(g) + "\n" for g in gold))
    found_path.write_text("".join(json.dumps(f) + "\n" for f in findings))
    result = subprocess.run(
        [sys.executable, str(score_py), str(gold_path), str(found_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def our_findings(scanner: Scanner, rules, texts: list[str]) -> tuple[list[dict], float]:
    started = time.perf_counter()
    findings = [
        {**f.as_dict(), "record": index}
        for index, found in enumerate(scanner.scan_texts(texts, rules))
        for f in found
    ]
    return findings, time.perf_counter() - started


def presidio_default(model: str, texts: list[str]) -> tuple[list[dict], float]:
    """Presidio's default AnalyzerEngine, called record by record, every entity, threshold 0."""
    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    # The default e-mail check fetches the public-suffix list; point it at the bundled one so
    # the comparison runs offline (its cost per call is unchanged).
    email_recognizer.tldextract.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    engine = AnalyzerEngine(
        nlp_engine=NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": model}],
            }
        ).create_engine()
    )
    started = time.perf_counter()
    findings = [
        {
            "record": index,
            "start": r.start,
            "end": r.end,
            "entity_type": r.entity_type,
            "score": r.score,
        }
        for index, text in enumerate(texts)
        for r in engine.analyze(text=text, language="en", score_threshold=0)
    ]
    return findings, time.perf_counter() - started


def run_pii_bench(policy_dir: str, shared_dir: Path, model: str) -> str:
    """Measure and return the Markdown section."""
    rules = load_rules(policy_dir)
    scanner = Scanner(model)
    score_py = shared_dir / "score.py"
    gold = shared_gold(shared_dir / "synth_dataset_v2.json")
    tax_gold = list(generate(1500, seed=7))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        texts = [g["text"] for g in gold]
        kb = sum(len(t.encode()) for t in texts) / 1024
        # Best of three runs each, alternating, so that a busy moment does not decide.
        our_runs, their_runs = [], []
        for _ in range(3):
            ours, seconds = our_findings(scanner, rules, texts)
            our_runs.append(seconds)
            theirs, seconds = presidio_default(model, texts)
            their_runs.append(seconds)
        our_seconds, their_seconds = min(our_runs), min(their_runs)
        ours_score = score(score_py, gold, ours, workdir)
        theirs_score = score(score_py, gold, theirs, workdir)
        tax_texts = [g["text"] for g in tax_gold]
        tax_ours, _ = our_findings(scanner, rules, tax_texts)
        tax_score = score(score_py, tax_gold, tax_ours, workdir)
    for name, result, seconds in (
        ("governance scanner (default rules)", ours_score, our_seconds),
        ("Presidio default AnalyzerEngine", theirs_score, their_seconds),
    ):
        by_type = result["recall_by_type"]
        rows.append(
            f"| {name} | {result['recall']:.3f} | {by_type['PERSON']:.3f} | "
            f"{by_type['STREET_ADDRESS']:.3f} | {result['precision']:.3f} | "
            f"{kb / seconds:.1f} |"
        )
    tax_types = ", ".join(f"{k} {v:.2f}" for k, v in tax_score["recall_by_type"].items())
    return "\n".join(
        [
            "## PII scanner",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, one process, "
            f"spaCy model `{model}` for both engines, on "
            f"`../shared/benchmarks/pii/synth_dataset_v2.json` ({len(gold)} records, "
            f"{kb:.0f} KB), scored by its `score.py`.",
            "",
            "| engine | recall | PERSON | STREET_ADDRESS | precision | KB/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"Speed ratio (ours / default, same records, one core, best of three runs each; "
            f"single runs varied {min(their_runs) / max(our_runs):.2f}x to "
            f"{max(their_runs) / min(our_runs):.2f}x): {their_seconds / our_seconds:.2f}x.",
            "",
            f"Faker tax corpus (`governance/pii/synthetic.py`, 1,500 records, seed 7; our own "
            f"generator, so an optimistic reference, not the held-out check): recall "
            f"{tax_score['recall']:.3f}, precision {tax_score['precision']:.3f} ({tax_types}).",
            "",
            run_support_bench(scanner, load_rules(policy_dir, "consumer-tax")),
            "",
            run_corpus_bench(scanner, load_rules(policy_dir, "consumer-tax")),
            "",
            f"Cold start (fresh process: imports, scanner, one record): "
            f"{cold_start_seconds():.2f} s of CPU; Presidio is loaded without transformers and "
            f"torch.",
            "",
            run_incremental_bench(),
            "",
            "Targets (issue 29), on text the team did not write: released records carrying a "
            "personal value at most 1%, quarantine at most 5% of records; scanner recall 0.95, "
            "names 0.93 and 0.85 for every origin, dates of birth 0.95, every structured "
            "identifier 0.99; precision 0.90; 3x the default's throughput per core; a cold "
            "start under 3 s of CPU.",
            "",
            "",
        ]
    )


def run_incremental_bench(count: int = 3000) -> str:
    """Scan a version in full, then a refresh whose records are 90% unchanged."""
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.scripts.incremental_scan",
                str(Path(scratch) / "home"),
                str(count),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    (full, _), (answers, cached), (new, cached_new) = json.loads(
        result.stdout.strip().splitlines()[-1]
    )
    return (
        f"Incremental rescans, {count} prompt/completion records: the first version scanned "
        f"in full in {full:.1f} s. A refresh that moves every record's metadata to the next "
        f"tax year and changes 10% of the answers ({cached} records served from the cache): "
        f"{answers:.2f} s, {full / answers:.1f}x faster. 10% of the records wholly new "
        f"({cached_new} from the cache): {new:.2f} s, {full / new:.1f}x. The cache is keyed "
        f"by each record's joined text (prompt and completion are scanned together, as the "
        f"trainer reads them), so a changed answer rescans its prompt too; 10x is the ceiling "
        f"with 10% of the records changed. Every timing includes decrypting, hashing, "
        f"redacting, the residual pass, the canaries and re-encrypting every record."
    )


def _coverage(findings, start: int, end: int, text: str) -> tuple[float, str]:
    """The share of a value's letters and digits the findings cover, and what is left."""
    covered: set[int] = set()
    for f in findings:
        covered.update(range(max(start, f.start), min(end, f.end)))
    alnum = [i for i in range(start, end) if text[i].isalnum()]
    left = "".join(text[i] if i not in covered else " " for i in range(start, end))
    return (len([i for i in alnum if i in covered]) / len(alnum) if alnum else 1.0), left


def _leaks(entity: str, left: str, share: float) -> bool:
    """Whether what a redaction left of a value still discloses it: under half of it covered,
    four digits in a row, or (for names) a word of three letters or more."""
    import re

    if share < 0.5 or re.search(r"\d{4}", left.replace(" ", "") if entity != "PERSON" else left):
        return True
    return entity == "PERSON" and bool(re.search(r"[^\W\d_]{3,}", left))


def support_scores(scanner, rules, records: list[dict], in_lexicon=None) -> dict[str, Any]:
    """Value and record figures on the support-traffic corpus (`benchmarks/pii_support.py`).

    Scanner recall counts a value found when the findings cover half of its letters and
    digits (the shared scorer's rule). The record figures run the whole gate (redaction, then
    the residual pass): a record with a residual is held in quarantine; a released record
    leaks when one of its values is under half covered or keeps four digits in a row or, for a
    name, a word of three letters.
    """
    import collections

    from governance.pii.sanitize import sanitize

    found = list(scanner.scan_texts([r["text"] for r in records], rules))
    names = getattr(scanner, "names", None)
    tally: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    findings = false_positives = 0
    held = held_clean = clean_records = released = leaked = leaked_values = dropped = 0
    for record, hits in zip(records, found, strict=True):
        text = record["text"]
        record_leaks = 0
        for start, end, entity, form, origin in record["spans"]:
            share, left = _coverage(hits, start, end, text)
            hit = share >= 0.5
            keys = [("type", entity), ("form", f"{entity} {form}"), ("all", "")]
            if entity == "PERSON":
                keys.append(("origin", origin))
                if in_lexicon is not None:
                    known = in_lexicon(text[start:end])
                    keys.append(("lexicon", "in the scanner's lexicon" if known else "not in it"))
            if entity in STRUCTURED_IDS:
                keys.append(("structured", ""))
            for key in keys:
                tally[key[0] + ":" + key[1]]["total"] += 1
                tally[key[0] + ":" + key[1]]["hit"] += hit
            record_leaks += _leaks(entity, left, share)
        for f in hits:
            findings += 1
            false_positives += not any(f.start < e and s < f.end for s, e, *_ in record["spans"])
        result = sanitize({"text": text}, hits, rules, names)
        is_clean = not record["spans"]
        clean_records += is_clean
        if result.dropped:
            dropped += 1  # a rule drops the record (a card in consumer-tax): never released
            continue
        if result.residuals:
            held += 1
            held_clean += is_clean
            continue
        released += 1
        leaked += record_leaks > 0
        leaked_values += record_leaks
    recall = {k: v["hit"] / v["total"] for k, v in tally.items()}
    return {
        "records": len(records),
        "values": tally["all:"]["total"],
        "recall": recall,
        "counts": {k: (v["hit"], v["total"]) for k, v in tally.items()},
        "precision": 1 - false_positives / max(findings, 1),
        "quarantine_share": held / len(records),
        "dropped_share": dropped / len(records),
        "held_clean": (held_clean, clean_records),
        "leak_rate": leaked / max(released, 1),
        "leaked": (leaked, released, leaked_values),
    }


def run_support_bench(scanner, rules, seeds=(101, 202), count: int = 1000) -> str:
    """The support-traffic corpus of benchmarks/pii_support.py, two seeds."""
    from benchmarks.pii_support import generate as support_records

    lexicon = scanner.names.lexicon
    faker = scanner.names.names.base

    def in_lexicon(name: str) -> bool:
        words = [w for w in re.split(r"[\s,.>]+", name) if len(w) > 1]
        return all(w in lexicon or w in faker for w in words)

    rows, detail = [], {}
    for seed in seeds:
        result = support_scores(scanner, rules, list(support_records(count, seed)), in_lexicon)
        recall, counts = result["recall"], result["counts"]
        origins = {k: v for k, v in recall.items() if k.startswith("origin:")}
        worst = min(origins, key=origins.get)
        ids = min(v for k, v in recall.items() if k.split(":")[1] in STRUCTURED_IDS)
        rows.append(
            f"| {seed} | {result['values']} | {recall['all:']:.3f} | {recall['type:PERSON']:.3f} "
            f"| {origins[worst]:.3f} ({worst.split(':')[1]}) | "
            f"{recall['type:DATE_OF_BIRTH']:.3f} | {recall['type:STREET_ADDRESS']:.3f} | "
            f"{ids:.3f} | {result['precision']:.3f} | {result['quarantine_share']:.1%} | "
            f"{result['leak_rate']:.1%} ({result['leaked'][0]} of {result['leaked'][1]}) |"
        )
        for key, (hit, total) in counts.items():
            if key.split(":")[0] in ("form", "origin", "lexicon"):
                acc = detail.setdefault(key, [0, 0])
                acc[0] += hit
                acc[1] += total
    detail_rows = [
        f"| {key.split(':', 1)[0]} | {key.split(':', 1)[1]} | {hit}/{total} | {hit / total:.3f} |"
        for key, (hit, total) in sorted(detail.items())
    ]
    return "\n".join(
        [
            f"Support-traffic corpus (`benchmarks/pii_support.py`: e-mail threads with quoted "
            f"replies and signatures, chats with speaker labels, agent notes, W-2/1099/1040 "
            f"text, pasted CSV/TSV and JSON, Spanish and bilingual messages, records with no "
            f"personal value but many look-alikes; names of 14 origins from lists typed there "
            f"and syllable grammars, never from the scanner's resources), {count} records per "
            f"seed, consumer-tax rules. This is the team's own corpus, written to the forms the "
            f"held-out test of issue 29 reported: it says how the gate does on what we know, "
            f"not on traffic nobody here has seen. Record figures run the whole gate: records "
            f"a rule drops (a card in consumer-tax) are neither released nor held; a released "
            f"record leaks when one of its values is under half covered, keeps four digits in "
            f"a row, or (a name) keeps a word of three letters.",
            "",
            "| seed | values | recall | names | worst origin | dates of birth | streets | "
            "worst structured id | precision | quarantined | released records leaking |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            "<details><summary>Recall per form, per origin, and for names in and out of the "
            "scanner's lexicon (names-dataset and Faker), both seeds</summary>",
            "",
            "| group | key | found | recall |",
            "| --- | --- | ---: | ---: |",
            *detail_rows,
            "",
            "</details>",
        ]
    )
