"""A PAT's home directory: all the device keeps.

    HOME/pat.json                          what the PAT knows (no secrets): its TBS (address,
                                           locator), checkpoint, identity name, enrolment id,
                                           installed instruction version, group, D-TA URLs
    HOME/instructions.key                  the AES-128 key its instructions are sealed with, 0600
    HOME/headers.sqlite                    its header chain, from the checkpoint on
    HOME/tbs-certificate.json              the TBS's canonical certificate, written only after its
                                           anchor verified against the headers
    HOME/trust.json                        its trust store: the TBS (pinned) and what the
                                           installed instructions name (origin tbs)
    HOME/instructions.json                 the installed instruction set's body (no secrets)
    HOME/identities/NAME/...               its key (0600) and certificate (identity.batchpat)
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...chain.hashes import from_display_hex, to_display_hex
from ...chain.headerchain import HeaderChain
from ...errors import IdentityError
from ...identity.certificate import BirthCertificate
from ...identity.files import write_atomically
from ...identity.keys import read_key_file, write_key_file
from ...identity.locator import Locator
from ...trust import TrustStore

STATE = "pat.json"
AES_KEY_FILE = "instructions.key"
HEADERS = "headers.sqlite"
TBS_CERTIFICATE = "tbs-certificate.json"
TRUST = "trust.json"
INSTRUCTIONS = "instructions.json"


@dataclass
class PatState:
    tbs: str                                   # HOST:PORT
    tbs_locator: dict[str, Any]                # Locator JSON (as shipped with the device)
    network: str
    name: str                                  # the PAT's identity name in HOME/identities
    checkpoint: dict[str, Any] | None = None   # {"height", "hash"} display hex; None: genesis
    enrolment_id: str | None = None
    installed_version: int = 0
    group: str | None = None
    dta_urls: list[str] = field(default_factory=list)

    @property
    def locator(self) -> Locator:
        return Locator.from_json(self.tbs_locator)


class PatHome:
    """Paths and files of one PAT's home (see the module doc)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    # --- state -------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.path / STATE).exists()

    def load(self) -> PatState:
        try:
            doc = json.loads((self.path / STATE).read_text())
        except FileNotFoundError:
            raise IdentityError(f"{self.path} is not a PAT's home (no {STATE}): run `milagro pat enrol`") from None
        return PatState(**doc)

    def save(self, state: PatState) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(self.path / STATE, json.dumps(asdict(state), indent=2) + "\n")

    # --- the AES key -------------------------------------------------------------------
    def aes_key(self) -> bytes:
        """The instructions key, created on first use (mode 0600, never overwritten)."""
        path = self.path / AES_KEY_FILE
        if not path.exists():
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_key_file(path, os.urandom(16))
        return read_key_file(path, length=16)      # plain or passphrase-encrypted

    # --- headers -----------------------------------------------------------------------
    def headers(self, network, checkpoint=None) -> HeaderChain:
        """The header chain file; ``checkpoint`` (a headerchain.Checkpoint) only when creating it."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return HeaderChain(str(self.path / HEADERS), network, checkpoint)

    @property
    def has_headers(self) -> bool:
        return (self.path / HEADERS).exists()

    # --- the TBS's verified certificate ---------------------------------------------------
    def tbs_certificate(self) -> BirthCertificate | None:
        path = self.path / TBS_CERTIFICATE
        return BirthCertificate.parse(path.read_bytes()) if path.exists() else None

    def save_tbs_certificate(self, certificate: BirthCertificate) -> None:
        write_atomically(self.path / TBS_CERTIFICATE, certificate.canonical_bytes().decode())

    # --- trust store and instructions --------------------------------------------------
    def trust(self) -> TrustStore:
        path = self.path / TRUST
        return TrustStore.load(path) if path.exists() else TrustStore()

    def save_trust(self, store: TrustStore) -> None:
        store.save(self.path / TRUST)

    def save_instructions(self, body: dict[str, Any]) -> None:
        write_atomically(self.path / INSTRUCTIONS, json.dumps(body, indent=2) + "\n")

    def instructions(self) -> dict[str, Any] | None:
        path = self.path / INSTRUCTIONS
        return json.loads(path.read_text()) if path.exists() else None


def parse_checkpoint(text: str) -> dict[str, Any]:
    """``HEIGHT:HASH`` (display hex) as the state's {"height", "hash"}; ValueError otherwise."""
    height, sep, block_hash = text.partition(":")
    if not sep or not height.isdigit():
        raise ValueError(f"a checkpoint is HEIGHT:HASH, not {text!r}")
    try:
        raw = from_display_hex(block_hash)
    except ValueError:
        raise ValueError(f"checkpoint hash {block_hash!r} is not a 32-byte hex hash") from None
    return {"height": int(height), "hash": to_display_hex(raw)}
