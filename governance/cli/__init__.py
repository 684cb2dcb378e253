"""The `govern` command line: one module per noun, registered on the main group here.

Exit codes scripts can rely on: 0 success; 1 the operation was refused or failed (the message
says why); 2 the command line itself was wrong; 3 the instance is not initialized.
"""

from __future__ import annotations

import click

from governance.cli import (
    approvals,
    audit,
    bench,
    datasets,
    demo,
    domains,
    evidence,
    families,
    instance,
    jobs,
    pii,
    policy,
    principals,
    refresh,
    retention,
    training,
    webhooks,
)
from governance.cli.base import main

COMMANDS = (
    instance.init,
    instance.serve,
    instance.engine,
    instance.guardrails,
    jobs.jobs,
    principals.principal,
    principals.token,
    domains.domain,
    datasets.dataset,
    datasets.keys,
    policy.policy,
    approvals.approvals,
    families.family,
    families.version,
    families.query,
    families.privacy,
    training.base_model,
    training.model,
    evidence.export,
    training.worker,
    training.lineage,
    training.erasure_report,
    refresh.scheduler,
    refresh.refresh,
    pii.pii,
    audit.audit_group,
    bench.bench,
    demo.demo,
    webhooks.webhooks,
    retention.retention,
)


def first_sentence(text: str | None) -> str:
    """A command's first sentence, whole: the listing of `govern --help` wraps it over lines
    rather than cutting it with '...'."""
    paragraph = " ".join((text or "").strip().split("\n\n")[0].split())
    if ". " in paragraph:
        paragraph = paragraph.split(". ")[0]
    return paragraph.rstrip(".")


def whole_short_help(command: click.Command) -> None:
    if command.short_help is None:
        command.short_help = first_sentence(command.help)
    for sub in getattr(command, "commands", {}).values():
        whole_short_help(sub)


for command in COMMANDS:
    main.add_command(command)
    whole_short_help(command)

__all__ = ["main"]
