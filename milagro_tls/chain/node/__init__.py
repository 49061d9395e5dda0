"""The embedded regtest node, validated by Bitcoin Core's kernel (see API.md)."""
