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
    "consistency_proof_ranges",
    "inclusion_proof",
    "inclusion_proof_ranges",
    "leaf_hash",
    "node_hash",
    "root",
    "subtree_roots",
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


def inclusion_proof_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Return the leaf ranges [lo, hi) whose subtree roots form leaf index's audit path."""
    if not 0 <= index < size:
        raise IndexError(f"leaf {index} is outside a tree of {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    # Walk down from the root, noting the sibling subtree at each level; emit bottom-up.
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo = lo + k
    ranges.reverse()
    return ranges


def consistency_proof_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Return the leaf ranges [lo, hi) whose subtree roots form the consistency proof."""
    if not 0 <= old_size <= new_size:
        raise IndexError(f"old size {old_size} is outside a tree of {new_size}")
    if old_size in (0, new_size):
        return []
    return _subproof_ranges(old_size, 0, new_size, True)


def _subproof_ranges(m: int, lo: int, hi: int, complete: bool) -> list[tuple[int, int]]:
    n = hi - lo
    if m == n:
        return [] if complete else [(lo, hi)]
    k = _split(n)
    if m <= k:
        return [*_subproof_ranges(m, lo, lo + k, complete), (lo + k, hi)]
    return [*_subproof_ranges(m - k, lo + k, hi, False), (lo, lo + k)]


def subtree_roots(ranges: Sequence[tuple[int, int]], leaves: Iterable[bytes]) -> list[bytes]:
    """Compute the roots of disjoint leaf ranges in one pass over the leaves, in order.

    Memory stays O(log n) whatever the number of leaves, so proofs over a large log can be
    built by streaming its leaf hashes.
    """
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    results: list[bytes] = [b""] * len(ranges)
    if not order:
        return results
    position = 0
    pending = iter(order)
    current = next(pending)
    compact: CompactRange | None = None
    for index, leaf in enumerate(leaves):
        lo, hi = ranges[current]
        if index < lo:
            continue
        if compact is None:
            compact = CompactRange()
        compact.append(leaf)
        position = index + 1
        if position == hi:
            results[current] = compact.root()
            compact = None
            following = next(pending, None)
            if following is None:
                return results
            current = following
    raise IndexError("the leaves ended before every proof range was covered")


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return the audit path of leaf `index` in the tree of `leaf_hashes` (RFC 6962 PATH)."""
    ranges = inclusion_proof_ranges(index, len(leaf_hashes))
    return [root(leaf_hashes[lo:hi]) for lo, hi in ranges]


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
    ranges = consistency_proof_ranges(old_size, len(leaf_hashes))
    return [root(leaf_hashes[lo:hi]) for lo, hi in ranges]


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
