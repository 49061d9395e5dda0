"""Our record layer and key block against an independent implementation: tlslite-ng's own
record layer, configured for the standard ECDHE suite with the same record protection.

This is what makes a Wireshark demo copy decryptable (the interop harness later checks the
same property against OpenSSL on standard suites)."""
from __future__ import annotations

import os
import socket

import pytest
from tlslite.constants import CipherSuite
from tlslite.recordlayer import RecordLayer as TlsliteRecordLayer

from milagro_tls.ciphersuites.registry import SUITES, BulkCipher
from milagro_tls.handshake.keyschedule import record_protections
from milagro_tls.handshake.records import ContentType, RecordLayer

STANDARD_TWIN = {
    BulkCipher.AES_128_GCM: CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    BulkCipher.AES_256_GCM: CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    BulkCipher.CHACHA20_POLY1305: CipherSuite.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
}


@pytest.mark.parametrize("suite", SUITES.values(), ids=[s.name for s in SUITES.values()])
@pytest.mark.parametrize("we_are_client", [True, False], ids=["client-writes", "server-writes"])
def test_tlslite_decrypts_our_records_with_the_standard_twin_suite(suite, we_are_client):
    master, client_random, server_random = os.urandom(48), os.urandom(32), os.urandom(32)
    client_write, server_write = record_protections(suite, master, client_random, server_random)
    ours = RecordLayer()
    ours.write_protection = client_write if we_are_client else server_write
    messages = [b"first record", b"x" * 20000, b""]
    wire = b"".join(ours.encode(ContentType.application_data, m) for m in messages)

    ours_end, their_end = socket.socketpair()
    with ours_end, their_end:
        theirs = TlsliteRecordLayer(their_end)
        theirs.version = (3, 3)
        theirs.client = not we_are_client          # it reads what the other side writes
        theirs.calcPendingStates(STANDARD_TWIN[suite.cipher], bytearray(master), bytearray(client_random),
                                 bytearray(server_random), None)
        theirs.changeReadState()
        ours_end.sendall(wire)
        received = b""
        while len(received) < sum(map(len, messages)):
            for result in theirs.recvRecord():
                if result not in (0, 1):
                    header, parser = result
                    assert header.type == ContentType.application_data
                    received += bytes(parser.bytes)
                    break
    assert received == b"".join(messages)
