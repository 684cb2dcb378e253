"""RFC 6962 (section 2.1) Merkle tree hashes, inclusion proofs and consistency proofs.

Bytes in, bytes out. leaf_hash(d) = SHA-256(0x00 || d); node_hash(l, r) = SHA-256(0x01 || l || r);
the root of no leaves is SHA-256 of the empty string. Every function takes and returns the
32-byte hashes themselves, never hex.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "CompactRange",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Hash one leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Return the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The roots of the perfect subtrees covering a prefix of leaves: O(log n) memory.

    Appending costs one leaf plus, amortized, one node hash, so a root over millions of
    leaves streams in constant memory.
    """

    __slots__ = ("_hashes", "_sizes", "size")

    def __init__(self) -> None:
        self._sizes: list[int] = []
        self._hashes: list[bytes] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        """Add the hash of the next leaf."""
        sizes, hashes = self._sizes, self._hashes
        size, value = 1, leaf
        while sizes and sizes[-1] == size:
            size += sizes.pop()
            value = node_hash(hashes.pop(), value)
        sizes.append(size)
        hashes.append(value)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add the hashes of several leaves in order."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """Return the tree head of the leaves added so far."""
        if not self._hashes:
            return EMPTY_ROOT
        value = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            value = node_hash(left, value)
        return value

    def copy(self) -> CompactRange:
        other = CompactRange()
        other._sizes = list(self._sizes)
        other._hashes = list(self._hashes)
        other.size = self.size
        return other


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle tree head of a list of leaf hashes."""
    compact = CompactRange()
    compact.extend(leaf_hashes)
    return compact.root()


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return the audit path of leaf `index` in the tree of `leaf_hashes` (RFC 6962 PATH)."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise IndexError(f"leaf {index} is outside a tree of {n}")
    proof: list[bytes] = []
    lo, hi = 0, n
    # Walk down from the root, noting the sibling subtree at each level; emit bottom-up.
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            proof.append(root(leaf_hashes[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(root(leaf_hashes[lo : lo + k]))
            lo = lo + k
    proof.reverse()
    return proof


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes):
    """Check that leaf_hash is leaf `index` of the tree of `size` leaves with this root."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    value = leaf_hash
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            value = node_hash(sibling, value)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            value = node_hash(value, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and value == root


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return the proof that the first old_size leaves' tree is a prefix (RFC 6962 PROOF)."""
    n = len(leaf_hashes)
    if not 0 <= old_size <= n:
        raise IndexError(f"old size {old_size} is outside a tree of {n}")
    if old_size in (0, n):
        return []
    return _subproof(old_size, leaf_hashes, 0, n, True)


def _subproof(m: int, leaves: Sequence[bytes], lo: int, hi: int, complete: bool) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if complete else [root(leaves[lo:hi])]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves, lo, lo + k, complete), root(leaves[lo + k : hi])]
    return [*_subproof(m - k, leaves, lo + k, hi, False), root(leaves[lo : lo + k])]


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check that the tree (old_size, old_root) is a prefix of (new_size, new_root)."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        # Every tree extends the empty one; RFC 6962 defines no proof for it.
        return not proof and old_root == EMPTY_ROOT
    proof = list(proof)
    if old_size & (old_size - 1) == 0:
        # A power of two: the old root is itself the first node of the path.
        proof = [old_root, *proof]
    if not proof:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
