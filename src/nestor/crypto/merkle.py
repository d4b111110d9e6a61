"""Merkle tree hash over chunk tags, as in RFC 9162 section 2.1.

Leaves are hashed as ``SHA-256(0x00 || leaf)``, interior nodes as
``SHA-256(0x01 || left || right)``, and a list of n > 1 leaves splits at the
largest power of two smaller than n. The same rules give inclusion proofs a
worker can later present for one chunk (RFC 9162 section 2.1.3).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def tree_hash(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 Merkle Tree Hash of ``leaves`` (the leaves, not their hashes).

    Iterative, bottom-up: pairing adjacent hashes level by level and carrying
    an odd last node upward gives exactly RFC 9162's split at the largest
    power of two smaller than n.
    """
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = [leaf_hash(leaf) for leaf in leaves]
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _largest_power_of_two_below(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 audit path for leaf ``index`` (recursive definition, 2.1.3.1)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf {index} is outside a tree of {n} leaves")
    if n == 1:
        return []
    k = _largest_power_of_two_below(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), tree_hash(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), tree_hash(leaves[:k])]


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from a leaf and its audit path (RFC 9162 2.1.3.2).

    Returns the root the proof leads to; the caller compares it in constant
    time with the root it trusts. Raises ValueError for a malformed proof.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is outside a tree of {size} leaves")
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in proof:
        if sn == 0:
            raise ValueError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("inclusion proof is shorter than the tree is deep")
    return r


class TreeBuilder:
    """RFC 9162 Merkle Tree Hash computed incrementally, in O(log n) memory.

    Leaves arrive one at a time. The builder keeps the roots of the complete
    (power-of-two) subtrees seen so far, merging equal sizes as they form;
    folding them from the right at the end gives exactly :func:`tree_hash`,
    because RFC 9162 splits every list at the largest power of two below its
    length. Datasets of any number of chunks commit in constant memory.
    """

    __slots__ = ("_count", "_stack")

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self._count = 0

    def add(self, leaf: bytes) -> None:
        size, digest = 1, leaf_hash(leaf)
        while self._stack and self._stack[-1][0] == size:
            left_size, left = self._stack.pop()
            size, digest = left_size + size, node_hash(left, digest)
        self._stack.append((size, digest))
        self._count += 1

    @property
    def count(self) -> int:
        return self._count

    def root(self) -> bytes:
        if not self._stack:
            return hashlib.sha256(b"").digest()
        digest = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            digest = node_hash(left, digest)
        return digest
