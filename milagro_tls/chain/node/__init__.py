"""The embedded regtest node, validated by Bitcoin Core's kernel (see API.md)."""
from .node import RegtestNode
from .store import Utxo

__all__ = ["RegtestNode", "Utxo"]
