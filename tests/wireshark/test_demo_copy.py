"""The decryptable demo copy (interop/wireshark/demo_copy.py) in the real tshark.

Stock tshark cannot decrypt our suites, even with the key log; the copy, with each suite
relabelled to the standard ECDHE suite of the same record protection and the key exchanges
reshaped, decrypts for all six, while every encrypted record and the staples stay in it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from milagro_tls.ciphersuites.registry import SUITES

from capture_helpers import REPO, capture_http, request_for, response_for, run_tshark
from interop.wireshark.demo_copy import LABEL, STANDARD_SUITE, make_demo_copy

ALL_SUITES = list(SUITES.values())


@pytest.fixture(scope="module")
def six_suites(world, tmp_path_factory):
    """A capture with one HTTP exchange per suite from an anchored client, and its demo copy."""
    directory = tmp_path_factory.mktemp("demo-copy")
    capture = capture_http(world, directory, ALL_SUITES)
    copy = directory / "capture.demo-copy.pcapng"
    make_demo_copy(capture.pcap, copy)
    return capture, copy


def _decrypted_http(pcap: Path, keylog: Path) -> dict[int, list[str]]:
    """tcp.stream -> the decrypted HTTP request URIs and response bodies tshark shows, in order."""
    out = run_tshark("-r", pcap, "-o", f"tls.keylog_file:{keylog}", "-Y", "http",
                     "-T", "fields", "-E", "separator=|", "-e", "tcp.stream", "-e", "http.request.uri",
                     "-e", "http.file_data")
    shown: dict[int, list[str]] = {}
    for line in out.splitlines():
        stream, uri, body = line.split("|")
        shown.setdefault(int(stream), []).append(uri or body.replace("\\n", "\n"))
    return shown


def _expected_http(suite) -> list[str]:
    request, response = request_for(suite).decode(), response_for(suite).decode()
    return [request.split(" ")[1], response.partition("\r\n\r\n")[2]]


@pytest.fixture(scope="module")
def decrypted_copy(six_suites):
    capture, copy = six_suites
    return _decrypted_http(copy, capture.keylog)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda suite: suite.name)
def test_tshark_decrypts_the_application_data_of_the_demo_copy(six_suites, decrypted_copy, suite):
    stream = ALL_SUITES.index(suite)                 # one connection per suite, in this order
    assert decrypted_copy.get(stream) == _expected_http(suite)


def test_tshark_cannot_decrypt_the_original_capture(six_suites):
    """Why the copy exists: Wireshark's compiled-in suite table has no 0xFF10-0xFF22."""
    capture, _ = six_suites
    assert _decrypted_http(capture.pcap, capture.keylog) == {}
    shown = run_tshark("-r", capture.pcap, "-Y", "tls.handshake.type == 2", "-T", "fields",
                       "-e", "tls.handshake.ciphersuite")
    assert shown.split() == [f"{suite.code:#06x}" for suite in ALL_SUITES]


def test_server_hello_suite_is_relabelled_by_bulk_cipher(six_suites):
    _, copy = six_suites
    shown = run_tshark("-r", copy, "-Y", "tls.handshake.type == 2", "-T", "fields", "-e", "tls.handshake.ciphersuite")
    assert shown.split() == [f"{STANDARD_SUITE[suite.cipher]:#06x}" for suite in ALL_SUITES]
    assert sorted({f"{code:#06x}" for code in STANDARD_SUITE.values()}) == ["0xc02b", "0xc02c", "0xcca9"]


def test_key_exchanges_parse_as_ecdhe_with_the_staples_still_in_them(world, six_suites):
    _, copy = six_suites
    server, client = world.identities["echo.example"], world.identities["alice"]
    fields = run_tshark("-r", copy, "-Y", "tls.handshake.type == 12", "-T", "fields", "-E", "separator=|",
                        "-e", "tls.handshake.server_curve_type", "-e", "tls.handshake.server_named_curve",
                        "-e", "tls.handshake.server_point", "-e", "tls.handshake.sig")
    rows = [line.split("|") for line in fields.splitlines()]
    assert len(rows) == len(ALL_SUITES)
    for curve_type, named_curve, point, signature in rows:
        assert (curve_type, named_curve) == ("0x03", "0x0016")               # named_curve, secp256k1
        assert len(bytes.fromhex(point)) == 33
        staple = bytes.fromhex(signature)                                     # decoded by no one, but there
        assert server.certificate_bytes in staple and server.proof_bytes in staple
    payloads = run_tshark("-r", copy, "-Y", "tls.handshake.type == 16", "-T", "fields", "-e", "tcp.payload",
                          "-e", "tls.handshake.client_point")
    rows = [line.split("\t") for line in payloads.splitlines()]
    assert len(rows) == len(ALL_SUITES)
    for payload, point in rows:
        assert len(bytes.fromhex(point)) == 33
        assert client.certificate_bytes in bytes.fromhex(payload) and client.proof_bytes in bytes.fromhex(payload)


def _records_after_change_cipher_spec(stream: bytes) -> tuple[bytes, list[bytes]]:
    """(the plaintext before the first ChangeCipherSpec record, each record from it on)."""
    offset = 0
    while offset < len(stream) and stream[offset] != 20:
        offset += 5 + int.from_bytes(stream[offset + 3:offset + 5], "big")
    records, head = [], stream[:offset]
    while offset < len(stream):
        end = offset + 5 + int.from_bytes(stream[offset + 3:offset + 5], "big")
        records.append(stream[offset:end])
        offset = end
    return head, records


def _tcp_streams(pcap: Path) -> dict[tuple[int, bool], bytes]:
    """(tcp.stream, from the client?) -> the bytes tshark reassembles for it (port 443 is the server)."""
    out = run_tshark("-r", pcap, "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.stream", "-e", "tcp.srcport",
                     "-e", "tcp.payload")
    streams: dict[tuple[int, bool], bytes] = {}
    for line in out.splitlines():
        stream, source_port, payload = line.split("\t")
        key = (int(stream), source_port != "443")
        streams[key] = streams.get(key, b"") + bytes.fromhex(payload)
    return streams


def _assert_only_the_handshake_changed(capture: Path, copy: Path, connections: int) -> None:
    originals, copies = _tcp_streams(capture), _tcp_streams(copy)
    assert sorted(originals) == sorted(copies) == [(n, side) for n in range(connections) for side in (False, True)]
    for key, original in originals.items():
        original_head, original_records = _records_after_change_cipher_spec(original)
        copied_head, copied_records = _records_after_change_cipher_spec(copies[key])
        assert copied_records == original_records and len(original_records) >= 3     # CCS, Finished, data...
        if key[1]:                                                   # the client's: only the CKE may differ
            assert copied_head == original_head
        else:
            assert copied_head != original_head                      # relabelled, reshaped


def test_every_encrypted_record_and_the_client_flight_stay_byte_identical(six_suites):
    capture, copy = six_suites
    _assert_only_the_handshake_changed(capture.pcap, copy, len(ALL_SUITES))


def test_copy_is_made_of_the_captured_bytes_even_with_scapys_tls_layer_loaded(world, tmp_path):
    """Once scapy's TLS layer is loaded (our registrations load it), reading a port-443 payload
    through scapy's layers would rebuild it from dissected fields; the copy must not."""
    import scapy.layers.tls.record  # noqa: F401  (binds TLS to TCP port 443)
    import milagro_tls.capture.scapy_suites  # noqa: F401

    capture = capture_http(world, tmp_path, ALL_SUITES[:1], client_identity=None)   # an empty locator
    copy = tmp_path / "copy.pcapng"
    make_demo_copy(capture.pcap, copy)
    _assert_only_the_handshake_changed(capture.pcap, copy, 1)
    assert _decrypted_http(copy, capture.keylog) == {0: _expected_http(ALL_SUITES[0])}


def test_tcp_stream_of_the_copy_is_consistent(six_suites):
    """Lengths changed, so the copy is re-segmented: no tshark sequence analysis complaint."""
    _, copy = six_suites
    assert run_tshark("-r", copy, "-Y", "tcp.analysis.flags || _ws.malformed || _ws.expert.severity >= warning") == ""


def test_every_packet_of_the_copy_is_labelled_a_demo_transformation(six_suites):
    _, copy = six_suites
    comments = run_tshark("-r", copy, "-T", "fields", "-e", "frame.comment").splitlines()
    assert comments and all(LABEL in line for line in comments)


def test_anonymous_and_resumed_connections_decrypt_too(world, tmp_path):
    capture = capture_http(world, tmp_path, ALL_SUITES, client_identity=None, resume=True)
    copy = tmp_path / "copy.pcapng"
    make_demo_copy(capture.pcap, copy)
    shown = _decrypted_http(copy, capture.keylog)
    assert shown == {2 * index + resumed: _expected_http(suite)
                     for index, suite in enumerate(ALL_SUITES) for resumed in (0, 1)}


def test_command_line_prints_the_label_and_refuses_to_overwrite_its_input(six_suites, tmp_path):
    capture, _ = six_suites
    out = tmp_path / "out.pcap"
    done = subprocess.run([sys.executable, "-m", "interop.wireshark.demo_copy", str(capture.pcap), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("DEMO TRANSFORMATION: not the bytes on the wire")
    assert "0xff20 TLS_YAK_BTC_WITH_AES_128_GCM_SHA256 relabelled 0xc02b" in done.stdout
    assert out.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"          # pcapng (comments), whatever the name
    done = subprocess.run([sys.executable, "-m", "interop.wireshark.demo_copy", str(out), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "must not overwrite" in done.stderr
