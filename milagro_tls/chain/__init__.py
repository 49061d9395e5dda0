"""Chain data: headers, blocks, proofs, sources, the embedded regtest node and the anchor verifier."""
