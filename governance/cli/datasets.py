"""Datasets (locally or over the API) and the key ring."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import click

from governance.cli.base import (
    cli_actor,
    fail_cleanly,
    follow_job,
    instance_session,
    instance_storage,
    progress_bar,
    progress_reader,
    remote,
    remote_call,
    settings,
    validated,
)

if TYPE_CHECKING:
    pass


@click.group()
def dataset() -> None:
    """Create datasets, upload, scan and delete their versions.

    With GOVERNANCE_URL set, every command goes through that service's API with your token
    (GOVERNANCE_TOKEN) and is authorized and audited as you; otherwise it acts on this
    instance directly, as the local operator."""


@dataset.command("create")
@click.argument("domain_name", metavar="DOMAIN")
@click.argument("name")
@click.option("--description", default="")
@fail_cleanly
def dataset_create(domain_name: str, name: str, description: str) -> None:
    """Create the dataset NAME in DOMAIN; prints its id."""
    from governance.datasets import service
    from governance.datasets.models import DatasetCreate
    from governance.domains.service import get_domain

    data = validated(DatasetCreate, name=name, description=description)
    if remote():
        created = remote_call("POST", f"/api/v1/domains/{domain_name}/datasets", data.model_dump())
        click.echo(created["id"])
        return
    with instance_session() as session:
        created = service.create_dataset(
            session, get_domain(session, domain_name), data, actor=cli_actor()
        )
        click.echo(created.id)


@dataset.command("list")
@click.argument("domain_name", metavar="DOMAIN")
@fail_cleanly
def dataset_list(domain_name: str) -> None:
    """List DOMAIN's datasets and their versions, each with its latest scan's verdict."""
    from governance.datasets import service
    from governance.domains.service import get_domain
    from governance.pii.service import latest_receipts

    if remote():
        for ds in remote_call("GET", f"/api/v1/domains/{domain_name}/datasets")["items"]:
            click.echo(f"{ds['id']}\t{ds['name']}")
            for v in remote_call("GET", f"/api/v1/datasets/{ds['id']}/versions")["items"]:
                state = v["status"] if v["status"] != "ready" else v.get("scan_verdict")
                click.echo(
                    f"  v{v['version']}\ttax_year={v['tax_year']}\t{state or 'not scanned'}\t"
                    f"records={v['record_count']}\t{(v['content_hash'] or '')[:16]}"
                )
        return
    with instance_session() as session:
        for ds in service.list_datasets(session, get_domain(session, domain_name)):
            click.echo(f"{ds.id}\t{ds.name}")
            versions = service.list_versions(session, ds)
            receipts = latest_receipts(session, [v.id for v in versions])
            for v in versions:
                receipt = receipts.get(v.id) if v.status == "ready" else None
                state = receipt.verdict if receipt else v.status
                if v.status == "ready" and receipt is None:
                    state = "not scanned"
                click.echo(
                    f"  v{v.number}\ttax_year={v.tax_year}\t{state}\t"
                    f"records={v.record_count}\t{v.content_hash[:16]}"
                )


@dataset.command("upload")
@click.argument("dataset_id", type=int)
@click.argument("file", type=click.File("rb"))
@click.option("--tax-year", required=True, type=click.IntRange(1900, 2200))
@fail_cleanly
def dataset_upload(dataset_id: int, file, tax_year: int) -> None:
    """Upload FILE (JSONL) as a new version of DATASET_ID, validated and encrypted."""
    from governance.datasets import service

    if remote():
        from governance.client import api_request

        size = os.fstat(file.fileno()).st_size if hasattr(file, "fileno") else 0
        with progress_reader(file, size, "uploading") as stream:
            raw = api_request(
                "POST",
                f"/api/v1/datasets/{dataset_id}/versions?tax_year={tax_year}",
                stream.read(),
                "application/x-ndjson",
            )
        version = json.loads(raw)
        click.echo(
            f"dataset {dataset_id} v{version['version']}: {version['record_count']} records, "
            f"tax year {version['tax_year']}, content hash {version['content_hash']}"
        )
        return
    keyring, store = instance_storage()
    config = settings()
    limits = service.UploadLimits.from_settings(config)
    size = os.fstat(file.fileno()).st_size if hasattr(file, "fileno") else 0
    with instance_session() as session:
        ds, domain = service.get_dataset(session, dataset_id)
        with progress_reader(file, size, "uploading") as stream:
            version = service.upload_version(
                session,
                keyring,
                store,
                ds,
                domain,
                tax_year,
                stream,
                actor=cli_actor(),
                limits=limits,
            )
        click.echo(
            f"{domain.name}/{ds.name} v{version.number}: {version.record_count} records, "
            f"tax year {version.tax_year}, content hash {version.content_hash}"
        )


@dataset.command("delete")
@click.argument("dataset_id", type=int)
@click.argument("number", type=int, metavar="VERSION")
@click.option("--reason", required=True, help="Why (kept on the tombstone).")
@fail_cleanly
def dataset_delete(dataset_id: int, number: int, reason: str) -> None:
    """Delete VERSION of DATASET_ID: destroy its key and blob, keep a tombstone."""
    from governance.datasets import service
    from governance.flows import deletion

    if remote():
        path = f"/api/v1/datasets/{dataset_id}/versions/{number}"
        remote_call("DELETE", path, {"reason": reason})
        click.echo(f"deleted v{number} of dataset {dataset_id}; tombstone kept")
        return
    keyring, store = instance_storage()
    with instance_session() as session:
        ds, _domain = service.get_dataset(session, dataset_id)
        version = service.get_version(session, ds, number)
        deletion.delete_version(session, keyring, store, version, reason, actor=cli_actor())
        click.echo(f"deleted v{number} of dataset {dataset_id}; tombstone kept")


@dataset.command("scan")
@click.argument("dataset_id", type=int)
@click.argument("number", type=int, metavar="VERSION")
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    default=None,
    help="Scanner processes (default: PII_SCAN_PROCESSES).",
)
@fail_cleanly
def dataset_scan(dataset_id: int, number: int, processes: int | None) -> None:
    """Scan VERSION of DATASET_ID under its domain's PII rules; print the receipt.

    Large versions scan faster over several processes; each loads the spaCy model once.
    """
    from governance.datasets import service
    from governance.pii import service as pii_service
    from governance.pii.rules import load_rules
    from governance.pii.scanner import open_scanner

    if remote():
        job = remote_call("POST", f"/api/v1/datasets/{dataset_id}/versions/{number}/scans")
        read = follow_job(job, "scanning")["result"]["receipt"]
        click.echo(summary(f"dataset {dataset_id}", number, read), err=True)
        click.echo(json.dumps(read))
        return
    keyring, store = instance_storage()
    config = settings()
    with instance_session() as session:
        ds, domain = service.get_dataset(session, dataset_id)
        version = service.get_version(session, ds, number)
        rules = load_rules(config["GOVERNANCE_POLICY_DIR"], domain.name)
        count = processes or int(config["PII_SCAN_PROCESSES"])
        with (
            open_scanner(config["PII_MODEL"], count) as scanner,
            progress_bar(version.record_count, "scanning") as advance,
        ):
            receipt = pii_service.scan_version(
                session,
                keyring,
                store,
                scanner,
                version,
                rules,
                actor=cli_actor(),
                progress=advance,
            )
        read = pii_service.receipt_read(receipt, version, rules.hash)
    click.echo(summary(ds.name, number, read), err=True)
    click.echo(json.dumps(read))


@dataset.command("quarantine")
@click.argument("dataset_id", type=int)
@click.argument("number", type=int, metavar="VERSION")
@click.option("--keep", "keep", type=int, default=None, metavar="RECORD", help="Keep a record.")
@click.option("--drop", "drop", type=int, default=None, metavar="RECORD", help="Drop a record.")
@click.option("--comment", default=None, help="Why (kept with the decision).")
@fail_cleanly
def dataset_quarantine(
    dataset_id: int, number: int, keep: int | None, drop: int | None, comment: str | None
) -> None:
    """List the records of VERSION the residual pass held, with the span that held each
    (digits as #); or keep or drop one (--keep/--drop RECORD --comment WHY)."""
    from governance.datasets import service
    from governance.pii import service as pii_service
    from governance.pii.models import QuarantineDecide, QuarantineRead

    if keep is not None and drop is not None:
        raise click.UsageError("give --keep or --drop, not both")
    record, decision = (keep, "keep") if keep is not None else (drop, "drop")
    base = f"/api/v1/datasets/{dataset_id}/versions/{number}/quarantine"
    if record is not None:
        body = validated(QuarantineDecide, decision=decision, comment=comment)
        if remote():
            remote_call("POST", f"{base}/{record}", body.model_dump())
        else:
            with instance_session() as session:
                ds, domain = service.get_dataset(session, dataset_id)
                version = service.get_version(session, ds, number)
                pii_service.decide_quarantine(
                    session,
                    version,
                    domain,
                    record,
                    decision,
                    actor=cli_actor(),
                    comment=comment,
                )
        click.echo(f"record {record}: {decision}; it takes effect at the next scan")
        return
    if remote():
        rows = remote_call("GET", base)["items"]
    else:
        with instance_session() as session:
            ds, _domain = service.get_dataset(session, dataset_id)
            version = service.get_version(session, ds, number)
            rows = [
                QuarantineRead.model_validate(r, from_attributes=True).model_dump(mode="json")
                for r in pii_service.list_quarantine(session, version)
            ]
    if not rows:
        click.echo("nothing is held")
    for row in rows:
        decided = f" [{row['decision']} by {row['decided_by']}]" if row["decision"] else ""
        click.echo(f"record {row['record_index']}{decided}")
        for span in row.get("spans") or []:
            click.echo(f"  {span['kind']}: ...{span['before']}[{span['span']}]{span['after']}...")


@dataset.command("label")
@click.argument("dataset_id", type=int)
@click.argument("number", type=int, metavar="VERSION")
@click.option("--record", "position", type=int, default=None, help="A sampled record.")
@click.option(
    "--missed",
    type=click.IntRange(0, 1000),
    default=None,
    help="How many personal values the record still shows (0: none).",
)
@click.option("--comment", default=None)
@fail_cleanly
def dataset_label(
    dataset_id: int, number: int, position: int | None, missed: int | None, comment: str | None
) -> None:
    """Show the latest scan's labelling sample and the recall it estimates; or label one
    sampled record (--record N --missed K): K personal values the redaction left in it."""
    from governance.datasets import service
    from governance.pii import service as pii_service
    from governance.pii.models import LabelCreate

    base = f"/api/v1/datasets/{dataset_id}/versions/{number}/labels"
    if (position is None) != (missed is None):
        raise click.UsageError("give --record and --missed together")
    body = validated(LabelCreate, missed=missed, comment=comment) if position is not None else None
    if remote():
        if body is not None:
            read = remote_call("POST", f"{base}/{position}", body.model_dump())
        else:
            read = remote_call("GET", base)
    else:
        keyring, _store = instance_storage()
        with instance_session() as session:
            ds, domain = service.get_dataset(session, dataset_id)
            receipt = pii_service.scanned_receipt(session, service.get_version(session, ds, number))
            if body is not None:
                pii_service.label_record(
                    session,
                    receipt,
                    domain,
                    position,
                    body.missed,
                    actor=cli_actor(),
                    comment=body.comment,
                )
            read = pii_service.label_sample_read(session, keyring, receipt)
    if position is None:
        for item in read["items"]:
            state = "unlabelled" if item["missed"] is None else f"{item['missed']} missed"
            click.echo(f"record {item['position']} ({item['redacted']} redacted, {state})")
            for field, text in sorted(item["text"].items()):
                click.echo(f"  {field}: {text}")
    click.echo(json.dumps(read["estimate"]))


def summary(name: str, number: int, read: dict[str, Any]) -> str:
    """A receipt in one readable line."""
    found = ", ".join(f"{t} {sum(f.values())}" for t, f in sorted(read["counts"].items()))
    return (
        f"{name} v{number}: {read['verdict']}; {read['records_total']} records, "
        f"{read['records_redacted']} redacted, {read['records_dropped']} dropped, "
        f"{read['records_quarantined']} held for review; canary recall "
        f"{read['canary_recall']}; found {found or 'nothing'}"
    )


@click.group()
def keys() -> None:
    """Manage the instance's keys."""


@keys.command("rotate")
@fail_cleanly
def keys_rotate() -> None:
    """Rotate the master key: re-wrap every domain key, re-encrypt no data."""
    from governance.audit.service import record
    from governance.domains.keys import rotate_master_key
    from governance.errors import InvalidInput
    from governance.runtime import keyring_for

    config = settings()
    if config.get("GOVERNANCE_MASTER_KEY"):
        raise InvalidInput(
            "the master key comes from GOVERNANCE_MASTER_KEY: rotate it in your secret store"
        )
    with instance_session() as session:
        count = rotate_master_key(session, keyring_for(config))
        record(
            session,
            cli_actor(),
            "keys.rotate",
            "master-key",
            "system",
            details={"domain_keys_rewrapped": count},
        )
        session.commit()
    click.echo(f"master key rotated; {count} domain keys re-wrapped")
