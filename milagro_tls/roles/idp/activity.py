"""Receipts for the anchored activity log: each successful login appends one leaf
SHA256(salt32 || u16be(len ID) || ID || u64be(period)) with a fresh random salt, and the
person gets (period, leaf, salt, issuer) back, so they can prove their login later while the
public log reveals nobody (the salt makes every leaf unguessable).

The log itself (periods, Merkle roots, anchoring) is roles.activitylog's; this module only
makes the leaf and hands it over.
"""
from __future__ import annotations

import hashlib
import os
import time
from typing import Callable


def receipt_leaf(salt: bytes, identifier: str, period: int) -> bytes:
    if len(salt) != 32:
        raise ValueError("the salt is 32 bytes")
    ident = identifier.encode()
    if len(ident) > 0xFFFF:
        raise ValueError("the identifier is at most 65535 bytes")
    return hashlib.sha256(salt + len(ident).to_bytes(2, "big") + ident + period.to_bytes(8, "big")).digest()


class AuthenticationRecorder:
    """``record(sub) -> receipt``: the IdPConfig.record_authentication hook.

    ``period_of(now)`` numbers the log's periods and ``append(leaf)`` commits the leaf to the
    log before returning (both from roles.activitylog's ActivityLog in production)."""

    def __init__(self, issuer: str, *, period_of: Callable[[float], int], append: Callable[[bytes], object] | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.issuer = issuer
        self.period_of = period_of
        self.append = append
        self.clock = clock

    def __call__(self, sub: str) -> dict:
        period = self.period_of(self.clock())
        salt = os.urandom(32)
        leaf = receipt_leaf(salt, sub, period)
        if self.append is not None:
            self.append(leaf)
        return {"period": period, "leaf": leaf.hex(), "salt": salt.hex(), "issuer": self.issuer}
