"""The scan cache's keys: HMACs under a key of the domain, so they die with it.

A plain SHA-256 of a record's text lets anyone holding the database confirm a guessed text
(an SSN has a billion values; a short prompt far fewer). The cache is therefore keyed by
HMAC-SHA256 under a key derived from the domain's key (HKDF), which lives only wrapped by the
master key; the rows of a deleted dataset version are deleted with it, and destroying a
domain's key leaves the rest unconfirmable. The gateway hashes prompts the same way.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete
from sqlmodel import Session

from governance.db import insert_or_ignore
from governance.domains.keys import KeyRing
from governance.domains.models import Domain
from governance.pii.models import ScanCacheEntry
from governance.pii.scanner import record_text

CONTENT_KEY_INFO = b"governance/content-hmac/v1"


def content_key(keyring: KeyRing, session: Session, domain: Domain) -> bytes:
    """The domain's key for hashing user content (derived; never stored)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=CONTENT_KEY_INFO).derive(
        keyring.domain_key(session, domain)
    )


def keyed_hash(key: bytes, text: str) -> str:
    """HMAC-SHA256 of a text under a domain's content key, hex."""
    return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def forget(session: Session, key: bytes, records: Iterable[dict[str, Any]]) -> int:
    """Delete the cache rows of these records' texts (any rules); return how many."""
    removed = 0
    batch: set[str] = set()
    for record in records:
        batch.add(keyed_hash(key, record_text(record)[0]))
        if len(batch) >= 500:
            removed += _delete(session, batch)
            batch.clear()
    if batch:
        removed += _delete(session, batch)
    return removed


def _delete(session: Session, hashes_: set[str]) -> int:
    result = session.execute(delete(ScanCacheEntry).where(ScanCacheEntry.text_hash.in_(hashes_)))
    return result.rowcount or 0


def remember(session: Session, rules_key: str, found: dict[str, list[Any]]) -> None:
    """Store findings per keyed text hash in a transaction of their own, committed now.

    A scan reads for minutes; if its cache rows were added to its own session, its first
    insert would hold SQLite's one write lock until the scan commits, and every other writer
    (job progress, audit entries, uploads) would wait out the busy timeout and fail. Rows are
    facts about a text under a rule set, so committing them early is safe, and a row another
    scan stored meanwhile is kept (insert or ignore)."""
    if not found:
        return
    rows = [{"text_hash": h, "rules_hash": rules_key, "findings": f} for h, f in found.items()]
    bind = session.get_bind()
    statement = insert_or_ignore(bind, ScanCacheEntry.__table__, ["text_hash", "rules_hash"])
    with bind.connect() as connection:
        connection.execute(statement, rows)
        connection.commit()
