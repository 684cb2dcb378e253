"""PII scans of local files, without an instance."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from governance.cli.base import fail_cleanly, progress_reader, settings

if TYPE_CHECKING:
    pass


@click.group()
def pii() -> None:
    """Scan data for personal information under the rules of policies/pii.yaml."""


@contextmanager
def local_records(file, verb: str) -> Iterator[Iterator[dict[str, Any]]]:
    """The records of a local JSONL file, validated line by line, read with a progress bar."""

    from governance.datasets.records import iter_lines, parse_record

    size = os.fstat(file.fileno()).st_size if hasattr(file, "fileno") else 0
    with progress_reader(file, size, verb) as stream:
        yield (
            parse_record(raw, number) for number, raw in iter_lines(stream, 1 << 24) if raw.strip()
        )


@pii.command("scan")
@click.argument("file", type=click.File("rb"))
@click.option("--domain", default=None, help="Apply this domain's rules (default rules otherwise).")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "summary"]), default="jsonl", show_default=True
)
@click.option("--model", default=None, help="spaCy model package (default: the configured one).")
@fail_cleanly
def pii_scan(file, domain: str | None, fmt: str, model: str | None) -> None:
    """Scan a local JSONL FILE without storing it; print each finding the rules act on.

    One JSON object a line: record (0-based line), field, start, end (characters of that
    field), entity_type, score. Values are never printed.
    """
    import collections

    from governance.pii.rules import load_rules
    from governance.runtime import default_scanner

    config = settings()
    rules = load_rules(config["GOVERNANCE_POLICY_DIR"], domain)
    scanner = default_scanner(config, model)
    counts: collections.Counter[str] = collections.Counter()
    with local_records(file, "scanning") as records:
        for _index, findings in scanner.scan_records(records, rules):
            for finding in findings:
                counts[finding.entity_type] += 1
                if fmt == "jsonl":
                    click.echo(json.dumps(finding.as_dict()))
    if fmt == "summary":
        click.echo(json.dumps({"rules": rules.hash, "counts": dict(counts), **scanner.versions}))


@pii.command("redact")
@click.argument("file", type=click.File("rb"))
@click.option("--domain", default=None, help="Apply this domain's rules (default rules otherwise).")
@click.option("--model", default=None, help="spaCy model package (default: the configured one).")
@fail_cleanly
def pii_redact(file, domain: str | None, model: str | None) -> None:
    """Print the records of a local JSONL FILE exactly as a training worker would get them.

    The same code path as the sanitized view that bundles are built from: prompt and
    completion scanned together, findings replaced by typed placeholders, metadata stripped,
    records that a `drop` rule or the residual pass holds back left out (each named on stderr
    with the reason, never the value). Nothing is stored.
    """
    import collections

    from audit.log import canonical
    from governance.pii.rules import load_rules
    from governance.pii.sanitize import sanitize
    from governance.runtime import default_scanner

    config = settings()
    rules = load_rules(config["GOVERNANCE_POLICY_DIR"], domain)
    scanner = default_scanner(config, model)
    outcome: collections.Counter[str] = collections.Counter()
    with local_records(file, "redacting") as stream:
        records = list(stream)
        for index, findings in scanner.scan_records(records, rules):
            result = sanitize(records[index], findings, rules, scanner.names)
            if result.dropped:
                outcome["dropped"] += 1
                click.echo(
                    f"record {index}: left out ({'/'.join(sorted(result.actions))})", err=True
                )
            elif result.residuals:
                outcome["quarantined"] += 1
                kinds = ", ".join(f"{k} {v}" for k, v in sorted(result.residuals.items()))
                click.echo(f"record {index}: held for a steward (residual {kinds})", err=True)
            else:
                outcome["redacted" if findings else "unchanged"] += 1
                click.echo(canonical(result.clean).decode())
    click.echo(json.dumps({"rules": rules.hash, **outcome}), err=True)
