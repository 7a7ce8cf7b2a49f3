"""The Merkle tree of RFC 9162 (Certificate Transparency 2.0), section 2.1, over the audit
chain: leaf i is the chain hash of event seq i+1 (which covers its content and every
event before it).

    leaf hash  = SHA-256(0x00 || leaf)
    node hash  = SHA-256(0x01 || left || right)
    MTH(D[n])  = the root over n leaves, split at the largest power of two below n

`inclusion_proof` / `verify_inclusion` are the audit paths of RFC 9162 §2.1.3: they prove
that an event is in the tree a signed checkpoint commits to, checkable offline with
nothing but this module (or any RFC 9162 implementation) and the checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over `leaves` (raw leaf data), computed bottom-up in O(n) hashes."""
    if not leaves:
        return EMPTY_ROOT
    # a stack of (height, hash) of complete subtrees, merged as in a binary counter; the
    # incomplete right edge is folded at the end, which gives RFC 9162's split
    stack: list[tuple[int, bytes]] = []
    for leaf in leaves:
        height, node = 0, leaf_hash(leaf)
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            height, node = height + 1, node_hash(left, node)
        stack.append((height, node))
    node = stack.pop()[1]
    while stack:
        node = node_hash(stack.pop()[1], node)
    return node


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf `index` in the tree over `leaves` (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: whether `proof` shows `leaf` at `index` in the tree of `size`
    leaves whose root is `expected_root`."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    node = leaf_hash(leaf)
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and node == expected_root
