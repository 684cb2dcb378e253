"""The `govern` command line: one module per noun, registered on the main group here.

Exit codes scripts can rely on: 0 success; 1 the operation was refused or failed (the message
says why); 2 the command line itself was wrong; 3 the instance is not initialized.
"""

from __future__ import annotations

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

for command in COMMANDS:
    main.add_command(command)

__all__ = ["main"]
