"""Export a whole log as a bundle in a fresh process: DATABASE_URL HOME OUT."""

from __future__ import annotations

import sys
from pathlib import Path

from governance.audit.service import AuditLog
from governance.db import Database
from governance.flows.log_export import EntryFilter, write_bundle


def main() -> None:
    db = Database(sys.argv[1])
    log = AuditLog(db, sys.argv[2], checkpoint_seconds=0)
    with db.unit_of_work() as session:
        write_bundle(session, EntryFilter(), Path(sys.argv[3]), log.signing_key, log.tree)
    db.dispose()


if __name__ == "__main__":
    main()
