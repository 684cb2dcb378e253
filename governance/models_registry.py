"""Import every table module, so SQLModel.metadata knows the whole schema."""

from __future__ import annotations


def import_all_models() -> None:
    """Import the table modules of every domain package."""
    import governance.accounts.models
    import governance.approvals.models
    import governance.audit.models
    import governance.console.models
    import governance.datasets.models
    import governance.domains.models
    import governance.families.models
    import governance.jobs.models
    import governance.pii.models
    import governance.scheduler.models
    import governance.training.models
    import governance.webhooks.models  # noqa: F401
