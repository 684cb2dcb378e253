"""Base models, the training worker, lineage and erasure reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from governance.cli.base import (
    EXIT_FAILED,
    cli_actor,
    fail_cleanly,
    family_version,
    instance_session,
    remote,
    settings,
    url_option,
)

if TYPE_CHECKING:
    pass


@click.group("base-model")
def base_model() -> None:
    """Register local base models (Hugging Face format); build a tiny one for demos."""


TINY_LICENSE = "CC0-1.0"


@base_model.command("create-tiny")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--hidden-size", default=64, show_default=True, type=int)
@click.option("--register", "name", default=None, help="Also register it under this name.")
@fail_cleanly
def base_model_create_tiny(path: str, seed: int, hidden_size: int, name: str | None) -> None:
    """Build a tiny Llama-architecture model and tokenizer at PATH, deterministically."""
    from trainers.tiny import create_tiny

    digest = create_tiny(path, seed, hidden_size)
    click.echo(f"{path}: weights {digest}")
    if name:
        from governance.families.intake import register_base_model

        with instance_session() as session:
            register_base_model(
                session,
                name,
                path,
                source=f"generated:trainers.tiny seed={seed} hidden_size={hidden_size}",
                license=TINY_LICENSE,
                actor=cli_actor(),
            )
        click.echo(f"registered as {name}; its use in a domain waits for that domain's approval")


@base_model.command("register")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--source", required=True, help="Where the weights came from (URL and revision, vendor)."
)
@click.option(
    "--license",
    "license_",
    required=True,
    help="SPDX license expression (Apache-2.0, or LicenseRef-<name> for another license).",
)
@fail_cleanly
def base_model_register(name: str, path: str, source: str, license_: str) -> None:
    """Take the model directory PATH in as NAME: safetensors weights only, every file hashed,
    its README.md as the model card. Each domain's reviewers must then approve its use."""
    from governance.families.intake import register_base_model

    with instance_session() as session:
        base = register_base_model(
            session, name, path, source=source, license=license_, actor=cli_actor()
        )
        click.echo(
            f"{base.name}: {base.architecture}, {base.license}, {len(base.files)} files, "
            f"weights {base.weights_hash}"
        )
        click.echo(f"next: govern approvals request-base {base.name} --domain DOMAIN")


@base_model.command("list")
@fail_cleanly
def base_model_list() -> None:
    """Registered base models with their license, state and approved domains."""
    from sqlmodel import select

    from governance.families.intake import approved_domains
    from governance.families.models import BaseModelRecord

    with instance_session() as session:
        for base in session.exec(select(BaseModelRecord).order_by(BaseModelRecord.name)).all():
            domains = ", ".join(approved_domains(session, base)) or "-"
            click.echo(
                f"{base.name:<20} {base.status:<9} {base.license or '(none)':<16} "
                f"approved in: {domains}  source: {base.source or '(unknown)'}"
            )


@base_model.command("withdraw")
@click.argument("name")
@click.option("--reason", required=True, help="Why (license change, security finding, ...).")
@fail_cleanly
def base_model_withdraw(name: str, reason: str) -> None:
    """Withdraw NAME: no new use, and every version built on it is tainted."""
    from governance.families.intake import find_base_model, withdraw_base_model

    with instance_session() as session:
        tainted = withdraw_base_model(
            session, find_base_model(session, name), reason, actor=cli_actor()
        )
        click.echo(f"{name} withdrawn; {len(tainted)} model version(s) tainted")


@click.command()
@url_option
@click.option("--once", is_flag=True, help="Stop when the queue is empty.")
@click.option("--poll", default=5.0, show_default=True, help="Seconds between empty claims.")
@fail_cleanly
def worker(url: str | None, once: bool, poll: float) -> None:
    """Claim training jobs over the API and run them here (GOVERNANCE_TOKEN: a worker's).

    The worker needs no database, keys or raw data: only a token allowed to claim jobs.
    """
    from governance.training.worker import serve

    count = serve(url, once=once, poll_seconds=poll, echo=click.echo)
    click.echo(f"{count} job(s) done")


@click.command()
@click.argument("family")
@click.argument("number", type=int, metavar="VERSION")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@fail_cleanly
def lineage(family: str, number: int, fmt: str) -> None:
    """Print how VERSION of FAMILY was made, as a tree or as signed JSON: over the API with
    your token when GOVERNANCE_URL is set, else on this instance."""
    from governance.families.lineage import render_tree

    if remote():
        from urllib.parse import quote

        from governance.client import api_call

        document = api_call("GET", f"/api/v1/models/{quote(family)}/versions/{number}/lineage")
    else:
        from governance import crypto
        from governance.families import service

        key = crypto.load_signing_key(settings()["GOVERNANCE_HOME"])
        with instance_session() as session:
            version = family_version(session, family, number)
            document = service.signed_lineage(session, version, key)
    if fmt == "json":
        click.echo(json.dumps(document, indent=2, sort_keys=True))
    else:
        click.echo(render_tree(document))


@click.group("model")
def model() -> None:
    """Signed model artifacts (OpenSSF model signing) on this instance."""


def _version_and_base(session, family: str, number: int):
    from governance.errors import NotFound
    from governance.families.models import BaseModelRecord

    version = family_version(session, family, number)
    if not version.adapter_key:
        raise NotFound(f"{family} v{number} has no adapter yet")
    return version, session.get(BaseModelRecord, version.base_model_id)


@model.command("verify")
@click.argument("family")
@click.argument("number", type=int, metavar="VERSION")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), default=None,
              help="Also write the adapter, its signature and the public key here, for "
              "`python -m model_signing verify key` to check on its own.")  # fmt: skip
@fail_cleanly
def model_verify(family: str, number: int, export_dir: str | None) -> None:
    """Check VERSION of FAMILY's stored adapter (and its base's manifest) against its
    signature; exit 1 if it does not verify."""
    import shutil

    from governance.families.signing import prepared_adapter, verify_version
    from governance.runtime import default_store, signer_for

    config = settings()
    signer = signer_for(config)
    store = default_store(config)
    with instance_session() as session:
        version, base = _version_and_base(session, family, number)
        result = verify_version(store, signer, version, base)
        if export_dir:
            target = Path(export_dir)
            prepared_adapter(store, version, base, target)
            (target / "adapter.sig").write_text(version.adapter_signature or "")
            shutil.copy(signer.public_key, target / "model-signing.pub")
    click.echo(
        f"{family} v{number}: signature verifies ({len(result['files'])} files, "
        f"key {result['key_hint'][:16]}...)"
    )
    if export_dir:
        click.echo(
            f"check it yourself: python -m model_signing verify key --signature "
            f"{export_dir}/adapter.sig --public_key {export_dir}/model-signing.pub "
            f"{export_dir}/adapter"
        )


@click.command("erasure-report")
@click.argument("dataset_version", metavar="DATASET_VERSION_UID")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write it here.")
@click.option(
    "--verify",
    "verify_file",
    is_flag=True,
    help="Treat the argument as a report file and check it.",
)
@fail_cleanly
def erasure_report(dataset_version: str, out: str | None, verify_file: bool) -> None:
    """Export, signed, which model versions a deleted dataset version tainted and what was done.

    With --verify, check a report file's digest and signature instead (exit 1 if bad).
    """
    from governance import crypto
    from governance.families.erasure import erasure_report as build
    from governance.families.erasure import verify_erasure_report

    if verify_file:
        ok = verify_erasure_report(json.loads(Path(dataset_version).read_text()))
        click.echo("OK: signature and digest verified" if ok else "FAILED: bad digest or signature")
        if not ok:
            sys.exit(EXIT_FAILED)
        return
    key = crypto.load_signing_key(settings()["GOVERNANCE_HOME"])
    with instance_session() as session:
        report = build(session, dataset_version, key)
    text = json.dumps(report, indent=2, sort_keys=True)
    if out:
        Path(out).write_text(text + "\n")
        click.echo(
            f"{out}: {len(report['affected_model_versions'])} model version(s) affected, "
            f"{len(report['actions'])} action(s); digest {report['digest'][:16]}"
        )
    else:
        click.echo(text)
