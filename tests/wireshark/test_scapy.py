"""scapy 2.8.0 with our registrations (milagro_tls/capture/scapy_suites.py) on the TRUE capture:
it names the six suites, dissects the key exchanges and the locator extension, and with the
key log decrypts the Finished messages and the application data of every suite."""
from __future__ import annotations

import pytest
from scapy.layers.inet import TCP
from scapy.layers.tls.handshake import (TLSClientHello, TLSClientKeyExchange, TLSFinished, TLSServerHello,
                                        TLSServerKeyExchange)
from scapy.layers.tls.record import TLS, TLSApplicationData

from milagro_tls.capture.scapy_suites import (SCAPY_SUITES, BitcoinStaple, EcdhBtcParams, TLS_Ext_MilagroLocator,
                                              YakBtcParams, decrypt_capture)
from milagro_tls.ciphersuites.registry import SUITES, KeyExchangeKind

from capture_helpers import capture_http, request_for, response_for

ALL_SUITES = list(SUITES.values())


def _by_connection(packets) -> list[list]:
    """Per TCP connection (in capture order): its packets that carry TLS, each as (from client?, packet)."""
    connections: dict[int, list] = {}
    for packet in packets:
        if TLS not in packet:
            continue
        tcp = packet[TCP]
        from_client = tcp.dport == 443
        connections.setdefault(tcp.sport if from_client else tcp.dport, []).append((from_client, packet))
    return list(connections.values())


def _layers(packet, cls) -> list:
    found, layer = [], packet.getlayer(cls)
    index = 1
    while layer is not None:
        found.append(layer)
        index += 1
        layer = packet.getlayer(cls, nb=index)
    return found


def _plaintext(connection, *, from_client: bool) -> bytes:
    return b"".join(layer.data for sender, packet in connection if sender == from_client
                    for layer in _layers(packet, TLSApplicationData))


@pytest.fixture(scope="module")
def anchored_capture(world, tmp_path_factory):
    return capture_http(world, tmp_path_factory.mktemp("scapy"), ALL_SUITES)


@pytest.fixture(scope="module")
def decrypted(anchored_capture):
    return _by_connection(decrypt_capture(anchored_capture.pcap, anchored_capture.keylog))


def test_scapy_knows_the_six_suites_by_name():
    assert {code: cls.__name__ for code, cls in SCAPY_SUITES.items()} == {s.code: s.name for s in ALL_SUITES}
    for suite in ALL_SUITES:
        cls = SCAPY_SUITES[suite.code]
        assert cls.usable and cls.cipher_alg.type == "aead" and cls.hash_alg.name == suite.prf_hash
        assert (cls.cipher_alg.key_len, cls.cipher_alg.fixed_iv_len) == (suite.cipher.key_length,
                                                                        suite.cipher.fixed_iv_length)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda suite: suite.name)
def test_scapy_decrypts_finished_and_application_data_of_the_true_capture(decrypted, suite):
    connection = decrypted[ALL_SUITES.index(suite)]
    hello = next(packet[TLSServerHello] for from_client, packet in connection if TLSServerHello in packet)
    assert hello.cipher == suite.code                               # the capture is not relabelled
    finished = {from_client for from_client, packet in connection if TLSFinished in packet}
    assert finished == {True, False}
    assert _plaintext(connection, from_client=True) == request_for(suite)
    assert _plaintext(connection, from_client=False) == response_for(suite)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda suite: suite.name)
def test_scapy_dissects_key_exchanges_staples_and_locators(world, decrypted, suite):
    connection = decrypted[ALL_SUITES.index(suite)]
    server, client = world.identities["echo.example"], world.identities["alice"]
    expected = YakBtcParams if suite.key_exchange is KeyExchangeKind.YAK_BTC else EcdhBtcParams
    packets = [packet for _, packet in connection]
    server_kx = next(p[TLSServerKeyExchange] for p in packets if TLSServerKeyExchange in p).params
    client_kx = next(p[TLSClientKeyExchange] for p in packets if TLSClientKeyExchange in p).exchkeys
    for params, identity in ((server_kx, server), (client_kx, client)):
        assert isinstance(params, expected) and len(params.point) == 33
        assert params[BitcoinStaple].certificate == identity.certificate_bytes
        assert params[BitcoinStaple].proof == identity.proof_bytes
        if expected is YakBtcParams:
            assert len(params.commitment) == 33 and len(params.response) == 32
        else:
            assert params.point == identity.nonce_point            # ECDH-BTC sends R itself
    for hello_cls, identity in ((TLSClientHello, client), (TLSServerHello, server)):
        hello = next(p[hello_cls] for p in packets if hello_cls in p)
        locator = next(ext for ext in hello.ext if isinstance(ext, TLS_Ext_MilagroLocator))
        assert bytes(locator.txid) == identity.locator.txid and locator.txid_hex == identity.locator.txid_hex
        assert locator.network == identity.locator.network.value and locator.input == identity.locator.input_index


def test_anonymous_client_key_exchange_has_no_staple_and_still_decrypts(world, tmp_path):
    capture = capture_http(world, tmp_path, ALL_SUITES, client_identity=None)
    connections = _by_connection(decrypt_capture(capture.pcap, capture.keylog))
    for suite, connection in zip(ALL_SUITES, connections):
        hello = next(p[TLSClientHello] for _, p in connection if TLSClientHello in p)
        locator = next(ext for ext in hello.ext if isinstance(ext, TLS_Ext_MilagroLocator))
        assert locator.len == 0                                       # anonymous: an empty locator
        client_kx = next(p[TLSClientKeyExchange] for _, p in connection if TLSClientKeyExchange in p).exchkeys
        assert BitcoinStaple not in client_kx and len(client_kx.point) == 33
        assert _plaintext(connection, from_client=True) == request_for(suite)


def test_scapy_rebuilds_every_dissected_packet_byte_for_byte(anchored_capture, world, tmp_path):
    """Our fields describe the messages exactly: dissect, build, and the captured bytes come back
    (an anonymous client's empty locator included)."""
    from scapy.utils import rdpcap

    anonymous = capture_http(world, tmp_path, ALL_SUITES, client_identity=None)
    for pcap in (anchored_capture.pcap, anonymous.pcap):
        packets = rdpcap(str(pcap))
        assert any(TLS_Ext_MilagroLocator in packet for packet in packets)
        assert [bytes(packet) for packet in packets] == [packet.original for packet in packets]


def test_without_the_key_log_nothing_is_decrypted(anchored_capture):
    packets = decrypt_capture(anchored_capture.pcap, None)
    assert not any(TLSApplicationData in packet or TLSFinished in packet for packet in packets)
    assert any(TLSServerKeyExchange in packet for packet in packets)   # dissected all the same


def test_a_capture_on_another_port_is_decrypted_when_the_port_is_named(world, tmp_path):
    suite = ALL_SUITES[0]
    capture = capture_http(world, tmp_path, [suite], server_port=None)          # the real, ephemeral port
    packets = decrypt_capture(capture.pcap, capture.keylog, ports=(capture.server_port,))
    data = b"".join(layer.data for packet in packets for layer in _layers(packet, TLSApplicationData))
    assert request_for(suite) in data and response_for(suite) in data
