"""audit.merkle against RFC 6962's published test vectors and a naive recursive reading."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import merkle

# The test inputs and tree heads published with RFC 6962's reference implementation
# (certificate-transparency, merkle_tree_test), used by every CT log implementation.
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [
    # leaf index, tree size, audit path
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        [
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        ],
    ),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
HASHES = [merkle.leaf_hash(leaf) for leaf in LEAVES]


def unhex(values):
    return [bytes.fromhex(v) for v in values]


# --- a naive, recursive reading of RFC 6962 section 2.1, to compare against -----------------


def k_of(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(d):
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = k_of(len(d))
    return merkle.node_hash(naive_mth(d[:k]), naive_mth(d[k:]))


def naive_path(m, d):
    if len(d) == 1:
        return []
    k = k_of(len(d))
    if m < k:
        return [*naive_path(m, d[:k]), naive_mth(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_mth(d[:k])]


def naive_subproof(m, d, b):
    n = len(d)
    if m == n:
        return [] if b else [naive_mth(d)]
    k = k_of(n)
    if m <= k:
        return [*naive_subproof(m, d[:k], b), naive_mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_mth(d[:k])]


def naive_proof(m, d):
    if m in (0, len(d)):
        return []
    return naive_subproof(m, d, True)


# --- the published vectors ------------------------------------------------------------------


def test_empty_root_is_sha256_of_nothing():
    assert merkle.root([]).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_roots(size):
    assert merkle.root(HASHES[:size]).hex() == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_vectors(index, size, path):
    proof = merkle.inclusion_proof(index, HASHES[:size])
    assert proof == unhex(path)
    root = bytes.fromhex(ROOTS[size - 1])
    assert merkle.verify_inclusion(HASHES[index], index, size, proof, root)
    assert not merkle.verify_inclusion(HASHES[index], index, size, proof, HASHES[7])
    if proof:
        assert not merkle.verify_inclusion(HASHES[index], index, size, proof[:-1], root)


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_consistency_vectors(old, new, path):
    proof = merkle.consistency_proof(old, HASHES[:new])
    assert proof == unhex(path)
    old_root, new_root = bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1])
    assert merkle.verify_consistency(old, new, old_root, new_root, proof)
    if old != new:
        assert not merkle.verify_consistency(old, new, new_root, new_root, proof)


# --- properties against the naive version ---------------------------------------------------

leaf_lists = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(leaf_lists, st.data())
def test_inclusion_matches_naive_and_verifies(leaves, data):
    hashes = [merkle.leaf_hash(x) for x in leaves]
    root = merkle.root(hashes)
    assert root == naive_mth(hashes)
    index = data.draw(st.integers(0, len(hashes) - 1))
    proof = merkle.inclusion_proof(index, hashes)
    assert proof == naive_path(index, hashes)
    assert merkle.verify_inclusion(hashes[index], index, len(hashes), proof, root)
    other = data.draw(st.integers(0, len(hashes) - 1))
    if hashes[other] != hashes[index]:
        assert not merkle.verify_inclusion(hashes[other], index, len(hashes), proof, root)


@settings(max_examples=150, deadline=None)
@given(leaf_lists, st.data())
def test_consistency_matches_naive_and_verifies(leaves, data):
    hashes = [merkle.leaf_hash(x) for x in leaves]
    new = len(hashes)
    old = data.draw(st.integers(1, new))
    proof = merkle.consistency_proof(old, hashes)
    assert proof == naive_proof(old, hashes)
    old_root, new_root = naive_mth(hashes[:old]), naive_mth(hashes)
    assert merkle.verify_consistency(old, new, old_root, new_root, proof)
    # A different history of the same length must not be shown consistent.
    forged = merkle.root([merkle.leaf_hash(b"forged"), *hashes[1:old]])
    if forged != old_root:
        assert not merkle.verify_consistency(old, new, forged, new_root, proof)


@settings(max_examples=50, deadline=None)
@given(leaf_lists)
def test_compact_range_gives_every_prefix_root(leaves):
    hashes = [merkle.leaf_hash(x) for x in leaves]
    compact = merkle.CompactRange()
    for i, h in enumerate(hashes, start=1):
        compact.append(h)
        assert compact.root() == naive_mth(hashes[:i])


@settings(max_examples=80, deadline=None)
@given(leaf_lists, st.data())
def test_streamed_proofs_equal_the_list_ones(leaves, data):
    hashes = [merkle.leaf_hash(x) for x in leaves]
    index = data.draw(st.integers(0, len(hashes) - 1))
    ranges = merkle.inclusion_proof_ranges(index, len(hashes))
    assert merkle.subtree_roots(ranges, iter(hashes)) == merkle.inclusion_proof(index, hashes)
    old = data.draw(st.integers(1, len(hashes)))
    ranges = merkle.consistency_proof_ranges(old, len(hashes))
    assert merkle.subtree_roots(ranges, iter(hashes)) == merkle.consistency_proof(old, hashes)
