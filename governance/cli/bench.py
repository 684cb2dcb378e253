"""`govern bench`: measure and write BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

import click

from governance.cli.base import fail_cleanly, settings


@click.command()
@click.option(
    "--only",
    type=click.Choice(
        [
            "all",
            "audit",
            "pii",
            "scale",
            "console",
            "authz",
            "replay",
            "privacy",
            "requests",
            "gateway",
            "gate",
            "growth",
        ]
    ),
    default="all",
    show_default=True,
    help="Which benchmarks to run.",
)
@click.option("--appends", default=20000, show_default=True, help="Appends per database.")
@click.option("--threads", default=64, show_default=True, help="Concurrent appending threads.")
@click.option(
    "--verify-entries",
    default=1_000_000,
    show_default=True,
    help="Size of the log exported and verified.",
)
@click.option(
    "--console-entries",
    default=200_000,
    show_default=True,
    help="Size of the log behind the console's pages.",
)
@click.option(
    "--postgres-url",
    default="postgresql://postgres@127.0.0.1:5432/test",
    show_default=True,
    help="PostgreSQL to measure on; '' to skip.",
)
@click.option(
    "--shared-pii",
    default="../shared/benchmarks/pii",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The shared PII benchmark folder.",
)
@click.option(
    "--growth-records",
    default="10000,100000",
    show_default=True,
    help="Growth: version sizes scanned (records, comma-separated; '' to skip scans).",
)
@click.option(
    "--growth-runners", default="1,2,4", show_default=True, help="Growth: job runner counts."
)
@click.option(
    "--growth-shard-kib",
    default=128,
    show_default=True,
    help="Growth: shard size of the versions scanned (KiB).",
)
@click.option(
    "--growth-entries",
    default="100000,1000000",
    show_default=True,
    help="Growth: audit log sizes verified ('' to skip).",
)
@click.option(
    "--growth-lines",
    default="1000,10000,100000,1000000",
    show_default=True,
    help="Growth: policy sizes in lines ('' to skip).",
)
@click.option(
    "--growth-versions",
    default="1,10,100",
    show_default=True,
    help="Growth: versions in production behind the gateway ('' to skip).",
)
@click.option("--out", default="BENCHMARKS.md", show_default=True, type=click.Path())
@fail_cleanly
def bench(
    only: str,
    appends: int,
    threads: int,
    verify_entries: int,
    console_entries: int,
    postgres_url: str,
    shared_pii: str,
    growth_records: str,
    growth_runners: str,
    growth_shard_kib: int,
    growth_entries: str,
    growth_lines: str,
    growth_versions: str,
    out: str,
) -> None:
    """Measure the audit log, the PII scanner, authorization, datasets at scale, the cost of
    a request against a bare Flask app, and the console; write OUT."""
    from benchmarks.audit_log import run_bench, write_section

    if only in ("all", "audit"):
        section = run_bench(postgres_url or None, appends, threads, verify_entries, echo=click.echo)
        write_section(out, "## Audit log", section)
        click.echo(section)
    if only in ("all", "pii"):
        from benchmarks.pii_scanner import run_pii_bench

        config = settings()
        click.echo("scanning the shared PII corpus with both engines ...")
        section = run_pii_bench(
            config["GOVERNANCE_POLICY_DIR"], Path(shared_pii), config["PII_MODEL"]
        )
        write_section(out, "## PII scanner", section)
        click.echo(section)
    if only in ("all", "authz"):
        from benchmarks.authz import run_authz_bench

        section = run_authz_bench(settings()["GOVERNANCE_POLICY_DIR"], echo=click.echo)
        write_section(out, "## Authorization at company size", section)
        click.echo(section)
    if only in ("all", "replay"):
        from benchmarks.replay import run_replay_bench

        section = run_replay_bench(settings()["GOVERNANCE_POLICY_DIR"], echo=click.echo)
        write_section(out, "## Policy replay and subject search", section)
        click.echo(section)
    if only in ("all", "privacy"):
        from benchmarks.privacy import run_privacy_bench

        section = run_privacy_bench(echo=click.echo)
        write_section(out, "## Differential privacy: cost and gain", section)
        click.echo(section)
    if only in ("all", "scale"):
        from benchmarks.scale import run_scale_bench

        config = settings()
        section = run_scale_bench(
            config["PII_MODEL"], config["GOVERNANCE_POLICY_DIR"], echo=click.echo
        )
        write_section(out, "## Dataset uploads and scans at scale", section)
        click.echo(section)
    if only in ("all", "requests"):
        from benchmarks.requests import run_requests_bench

        section = run_requests_bench(postgres_url or None, echo=click.echo)
        write_section(out, "## Request cost", section)
        click.echo(section)
    if only in ("all", "gateway"):
        from benchmarks.gateway import run_gateway_bench

        section = run_gateway_bench(postgres_url or None, echo=click.echo)
        write_section(out, "## Gateway cost", section)
        click.echo(section)
    if only in ("all", "gate"):
        from benchmarks.gate import run_gate_bench

        section = run_gate_bench(echo=click.echo)
        write_section(out, "## Evaluation gate", section)
        click.echo(section)
    if only in ("all", "console"):
        from benchmarks.console import run_console_bench

        section = run_console_bench(console_entries, echo=click.echo)
        write_section(out, "## Console", section)
        click.echo(section)
    if only in ("all", "growth"):
        from benchmarks.growth import run_growth_bench

        def sizes(text: str) -> tuple[int, ...]:
            return tuple(int(part) for part in text.split(",") if part.strip())

        section = run_growth_bench(
            sizes(growth_records),
            sizes(growth_runners),
            growth_shard_kib * 1024,
            sizes(growth_entries),
            sizes(growth_lines),
            str(Path(settings()["GOVERNANCE_POLICY_DIR"])),
            sizes(growth_versions),
            postgres_url or None,
            Path(out).resolve().parent / "docs" / "growth.svg",
            echo=click.echo,
        )
        write_section(out, "## Growth: how cost grows with the work", section)
        click.echo(section)
