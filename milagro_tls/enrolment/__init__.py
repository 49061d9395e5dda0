"""Thin-client enrolment formats, sans-IO: what a PAT and its TBS exchange.

    request       the ECIES-sealed enrolment request (certificate + AES key) and the poll MAC
    instructions  versioned instruction sets: signed by the TBS's identity key, AES-GCM sealed
                  per PAT, verified entry by entry against the PAT's headers alone
"""
from .errors import (EnrolmentError, InstructionEntryInvalid, InstructionsForged, InstructionsRefused,
                     InstructionsRollback, InstructionsTampered, MalformedEnrolment, MalformedInstructions)
from .instructions import (InstructionSet, InstructionTrust, open_instructions, seal_instructions,
                           sealed_version, verify_instruction_entries, verify_pat_anchor)
from .request import (EnrolmentRequest, check_poll_mac, enrolment_key_of, open_enrolment, poll_mac,
                      seal_enrolment)

__all__ = ["EnrolmentError", "EnrolmentRequest", "InstructionEntryInvalid", "InstructionSet", "InstructionTrust",
           "InstructionsForged", "InstructionsRefused", "InstructionsRollback", "InstructionsTampered",
           "MalformedEnrolment", "MalformedInstructions", "check_poll_mac", "enrolment_key_of",
           "open_enrolment", "open_instructions", "poll_mac", "seal_enrolment", "seal_instructions",
           "sealed_version", "verify_instruction_entries", "verify_pat_anchor"]
