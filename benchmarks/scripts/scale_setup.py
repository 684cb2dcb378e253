"""An instance with a domain and a dataset for the scale benchmark: HOME."""

from __future__ import annotations

import sys

from governance.audit.service import Actor
from governance.config import load_config
from governance.datasets import service as datasets
from governance.datasets.models import DatasetCreate
from governance.db import Database
from governance.domains.models import DomainCreate
from governance.domains.service import create_domain
from governance.instance import init_instance


def main() -> None:
    config = load_config({"GOVERNANCE_HOME": sys.argv[1]})
    init_instance(config)
    with Database(config["GOVERNANCE_DATABASE_URL"]).unit_of_work() as session:
        actor = Actor("bench")
        domain = create_domain(
            session,
            DomainCreate(name="consumer-tax", jurisdiction="US", retention_days=2555),
            actor=actor,
        )
        datasets.create_dataset(session, domain, DatasetCreate(name="scale"), actor=actor)


if __name__ == "__main__":
    main()
