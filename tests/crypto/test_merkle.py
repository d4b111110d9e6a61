"""RFC 9162 Merkle trees: the recursive definition, the incremental builder
and inclusion proofs agree."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nestor.crypto.merkle import (
    TreeBuilder,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    tree_hash,
)


def reference(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, written as the RFC states it."""
    n = len(leaves)
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k << 1 < n:
        k <<= 1
    return node_hash(reference(leaves[:k]), reference(leaves[k:]))


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70))
def test_tree_hash_and_builder_match_the_rfc(leaves: list[bytes]) -> None:
    builder = TreeBuilder()
    for leaf in leaves:
        builder.add(leaf)
    assert tree_hash(leaves) == reference(leaves) == builder.root()


@given(st.lists(st.binary(max_size=4), min_size=1, max_size=40), st.data())
def test_inclusion_proofs(leaves: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = inclusion_proof(i, leaves)
    assert root_from_inclusion_proof(i, len(leaves), leaves[i], proof) == tree_hash(leaves)
    if proof:
        bad = [bytes(32), *proof[1:]]
        assert root_from_inclusion_proof(i, len(leaves), leaves[i], bad) != tree_hash(leaves)


def test_empty_tree_is_hash_of_nothing() -> None:
    assert TreeBuilder().root() == tree_hash([])


def test_malformed_proofs_are_rejected() -> None:
    leaves = [b"a", b"b", b"c"]
    with pytest.raises(ValueError, match="longer"):
        root_from_inclusion_proof(0, 3, b"a", [*inclusion_proof(0, leaves), bytes(32)])
    with pytest.raises(ValueError, match="shorter"):
        root_from_inclusion_proof(0, 3, b"a", inclusion_proof(0, leaves)[:1])
    with pytest.raises(ValueError, match="outside"):
        root_from_inclusion_proof(3, 3, b"a", [])
