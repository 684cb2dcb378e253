"""Domain keys and data keys: the envelope under which every dataset version is stored.

The master key wraps one key per domain; each domain key wraps the data key of each dataset
version in that domain. Rotating the master key re-wraps the domain keys only; no data is
re-encrypted. Every wrap names what it belongs to (associated data), so keys cannot be moved.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, select

from governance import crypto
from governance.db import has_written, insert_or_ignore, on_commit, utcnow
from governance.domains.models import Domain, DomainKey


def domain_aad(domain: Domain) -> bytes:
    return f"governance/domain-key/{domain.id}/{domain.name}".encode()


def data_key_aad(domain: Domain, version_uid: str) -> bytes:
    return f"governance/data-key/{domain.name}/{version_uid}".encode()


class KeyRing:
    """Finds master keys by id and opens domain keys; one per process or command."""

    def __init__(self, home: str | Path, env_value: str | None = None) -> None:
        self.home = Path(home)
        self.env_value = env_value

    def master(self) -> tuple[str, bytes]:
        """Return the id and bytes of the master key in force."""
        key = crypto.load_master_key(self.home, self.env_value)
        return crypto.master_key_id(key), key

    def master_by_id(self, wanted: str) -> bytes:
        """Return the master key with this id: the current one, or one mid-rotation."""
        candidates = [crypto.load_master_key(self.home, self.env_value)]
        pending = crypto.keys_dir(self.home) / crypto.MASTER_KEY_NEXT_FILE
        if pending.exists():
            candidates.append(crypto.load_master_key_file(pending))
        for key in candidates:
            if crypto.master_key_id(key) == wanted:
                return key
        raise crypto.KeyFileError(
            f"no master key with id {wanted} is available", details={"master_key_id": wanted}
        )

    def domain_key(self, session: Session, domain: Domain) -> bytes:
        """Return the domain's key, creating and wrapping it on first use.

        A key first needed by work that has written nothing yet (a domain's first model
        query) is made in a transaction of its own and kept whatever that work goes on to do,
        so no lock is held while it runs; a concurrent first use that made it meanwhile wins,
        and its key is taken. Otherwise it is made in the caller's transaction."""
        row = session.exec(select(DomainKey).where(DomainKey.domain_id == domain.id)).first()
        if row is None and has_written(session):
            key = crypto.new_key()
            master_id, master = self.master()
            session.add(
                DomainKey(
                    domain_id=domain.id,
                    wrapped_key=crypto.seal(master, key, domain_aad(domain)),
                    master_key_id=master_id,
                )
            )
            session.flush()
            return key
        if row is None:
            master_id, master = self.master()
            wrapped = crypto.seal(master, crypto.new_key(), domain_aad(domain))
            table = DomainKey.__table__
            with session.get_bind().connect() as connection:
                connection.execute(
                    insert_or_ignore(connection, table, ["domain_id"]),
                    {
                        "domain_id": domain.id,
                        "wrapped_key": wrapped,
                        "master_key_id": master_id,
                        "created_at": utcnow(),
                    },
                )
                connection.commit()
                row = connection.execute(
                    sa.select(table.c.master_key_id, table.c.wrapped_key).where(
                        table.c.domain_id == domain.id
                    )
                ).one()
        master = self.master_by_id(row.master_key_id)
        return crypto.open_sealed(master, row.wrapped_key, domain_aad(domain))

    def new_data_key(self, session: Session, domain: Domain, version_uid: str):
        """Return a fresh data key and its form wrapped by the domain key."""
        key = crypto.new_key()
        wrapped = crypto.seal(
            self.domain_key(session, domain), key, data_key_aad(domain, version_uid)
        )
        return key, wrapped

    def open_data_key(
        self, session: Session, domain: Domain, version_uid: str, wrapped: bytes
    ) -> bytes:
        """Unwrap a version's data key."""
        return crypto.open_sealed(
            self.domain_key(session, domain), wrapped, data_key_aad(domain, version_uid)
        )


def rotate_master_key(session: Session, ring: KeyRing) -> int:
    """Re-wrap every domain key under a new master key; return how many were re-wrapped.

    Crash-safe: the new key is written to master.key.next first, the re-wrap commits in one
    transaction (the caller's) recording the new key's id on every row, and only once that
    commits does the new key replace master.key. A crash at any point leaves each row
    openable by a key on disk.
    """
    keys = crypto.keys_dir(ring.home)
    pending = keys / crypto.MASTER_KEY_NEXT_FILE
    ring.master()  # fail early when the current master key cannot be read
    if pending.exists():
        new = crypto.load_master_key_file(pending)
    else:
        new = crypto.new_key()
        crypto.write_secret_file(pending, crypto.encode_master_key(new))
    new_id = crypto.master_key_id(new)
    count = 0
    for row, domain in session.exec(
        select(DomainKey, Domain).where(DomainKey.domain_id == Domain.id)
    ):
        if row.master_key_id == new_id:
            continue
        plain = crypto.open_sealed(
            ring.master_by_id(row.master_key_id), row.wrapped_key, domain_aad(domain)
        )
        row.wrapped_key = crypto.seal(new, plain, domain_aad(domain))
        row.master_key_id = new_id
        row.rewrapped_at = utcnow()
        session.add(row)
        count += 1
    # Only once every row names the new key's id does the new key replace master.key.
    on_commit(session, lambda: os.replace(pending, keys / crypto.MASTER_KEY_FILE))
    return count
