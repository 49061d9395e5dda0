"""Errors of the enrolment formats.

    EnrolmentError                  (MilagroError)
     ├── MalformedEnrolment          an enrolment request that does not decrypt or parse
     └── InstructionsRefused         an instruction set the PAT will not install
          ├── InstructionsTampered   the AES-GCM tag does not verify (wrong key, altered bytes)
          ├── InstructionsForged     the signature is not the TBS's anchored key's
          ├── InstructionsRollback   a version not above the installed one
          ├── MalformedInstructions  the authenticated plaintext does not parse
          └── InstructionEntryInvalid  a trust entry's or the PAT's own anchor does not verify
"""
from __future__ import annotations

from ..errors import MilagroError


class EnrolmentError(MilagroError):
    """Root of the enrolment formats' errors."""


class MalformedEnrolment(EnrolmentError, ValueError):
    """The enrolment blob does not decrypt to exactly one well-formed request."""


class InstructionsRefused(EnrolmentError):
    """The PAT refuses this instruction set (the subclass says why)."""


class InstructionsTampered(InstructionsRefused):
    """AES-GCM authentication failed: not sealed with this PAT's key, or altered on the way."""


class InstructionsForged(InstructionsRefused):
    """The signature does not verify under the TBS's anchored identity key."""


class InstructionsRollback(InstructionsRefused):
    """The set's version is not above the version already installed."""

    def __init__(self, version: int, installed: int) -> None:
        self.version = version
        self.installed = installed
        super().__init__(f"instruction set version {version} is not above the installed version {installed}")


class MalformedInstructions(InstructionsRefused, ValueError):
    """The sealed blob or its authenticated plaintext is not a well-formed instruction set."""


class InstructionEntryInvalid(InstructionsRefused):
    """A trust entry's (or the PAT's own) anchor does not verify against the caller's headers."""
