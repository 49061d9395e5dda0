"""The tbs:// source: a thin client syncing headers from a checkpoint through a TBS's chain
endpoints and verifying proofs against them; and what it refuses from a lying or lagging TBS."""
import dataclasses
import ssl
import threading

import httpx
import pytest
from flask import Flask, Response
from werkzeug.serving import make_server

from milagro_tls.chain.errors import (AnchorNotFound, BlockNotFound, HeaderRejected, ProofMismatch, SourceBehind,
                                      SourceError, TxNotFound, TxRejected)
from milagro_tls.chain.hashes import sha256d
from milagro_tls.chain.header import BlockHeader
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.proof import fetch_anchor_proof
from milagro_tls.chain.source import ChainSource, Tip
from milagro_tls.chain.spec import open_source
from milagro_tls.chain.tbs_endpoints import MAX_BROADCAST_SIZE, chain_blueprint
from milagro_tls.chain.tbs_source import TbsSource, checkpoint_from_source
from milagro_tls.chain.tx import parse_tx, txid_of
from milagro_tls.chain.verify import resolve_anchor, verify_anchor

BASE = "https://tbs.test"


def app_for(source, *, before=None, **options) -> Flask:
    """A TBS's chain endpoints over ``source``; ``before(app)`` registers lying routes first
    (werkzeug matches the first rule added for a path)."""
    app = Flask("tbs-test")
    if before:
        before(app)
    app.register_blueprint(chain_blueprint(source, **options))
    return app


def tbs_for(app) -> TbsSource:
    return TbsSource(BASE, transport=httpx.WSGITransport(app=app))


def thin_chain(world, tbs, back: int = 20) -> HeaderChain:
    """A PAT's header chain from a checkpoint ``back`` blocks below the tip (height + hash)."""
    height = world.source.tip().height - back
    checkpoint = checkpoint_from_source(tbs, height, sha256d(world.source.header(height)))
    return HeaderChain(":memory:", world.source.network, checkpoint)


@pytest.fixture
def tbs(world):
    source = tbs_for(app_for(world.source))
    yield source
    source.close()


def anchor(world, name):
    party = world.parties[name]
    return party.locator, party.certificate


def test_thin_client_syncs_from_a_checkpoint_and_verifies_proofs(world, tbs):
    locator, certificate = anchor(world, "echo.example")
    anchored_at = world.source.tx_status(locator.txid).height
    tip = world.source.tip()
    # The PAT ships a checkpoint (height + hash) just below the anchor it will verify.
    headers = thin_chain(world, tbs, back=tip.height - (anchored_at - 1))
    assert headers.sync_from(tbs) == tip.height - anchored_at + 1
    assert headers.tip() == (tip.height, tip.block_hash)
    assert headers.header_at(anchored_at - 2) is None          # nothing below the checkpoint
    identity, proof = resolve_anchor(locator, certificate, tbs, headers, min_confirmations=1)
    assert identity.certificate == certificate and identity.block_hash == locator.block_hash
    assert identity.confirmations == tip.height - anchored_at + 1
    # The proof the TBS assembled is the one the embedded node's block gives.
    assert proof.encode() == fetch_anchor_proof(world.source, locator.txid, locator.block_hash, anchored_at).encode()
    # A thin client never downloads a block.
    with pytest.raises(SourceError, match="serves proofs, not blocks"):
        tbs.block(locator.block_hash)


def test_checkpoint_must_be_the_header_the_tbs_serves(world, tbs):
    height = world.source.tip().height - 5
    with pytest.raises(SourceError, match=f"at height {height} is not the checkpoint"):
        checkpoint_from_source(tbs, height, sha256d(world.source.header(height - 1)))


def test_network_tip_status_tx_outspend(world, tbs):
    assert tbs.network == world.source.network
    assert tbs.tip() == world.source.tip()
    locator, _ = anchor(world, "alice")
    status = tbs.tx_status(locator.txid)
    assert status == world.source.tx_status(locator.txid)
    assert tbs.transaction(locator.txid) == world.source.transaction(locator.txid)
    assert tbs.transaction(locator.txid, locator.block_hash) == world.source.transaction(locator.txid)
    assert tbs.outspend_unverified(locator.txid, 0) == world.source.outspend_unverified(locator.txid, 0)
    unknown = b"\x42" * 32
    with pytest.raises(TxNotFound):
        tbs.tx_status(unknown)
    with pytest.raises(TxNotFound):
        tbs.transaction(unknown)
    with pytest.raises(AnchorNotFound, match="has no proof of .*tx_not_found"):
        tbs.anchor_proof(locator.txid, world.source.tip().block_hash, world.source.tip().height)
    assert tbs.headers(world.source.tip().height + 1, 10) == []
    with pytest.raises(BlockNotFound):
        tbs.header(world.source.tip().height + 1)
    # Pages of at most MAX_HEADERS are stitched together.
    assert len(tbs.headers(0, 2500)) == min(2500, world.source.tip().height + 1)


def test_endpoint_refusals_are_json(world):
    client = app_for(world.source).test_client()
    for path, status, error in [
            ("/chain/headers?start=0&count=2001", 400, "bad_request"),
            ("/chain/headers?start=0&count=0", 400, "bad_request"),
            ("/chain/headers?start=-1&count=1", 400, "bad_request"),
            ("/chain/headers?count=1", 400, "bad_request"),
            ("/chain/proof?txid=zz&block=00", 400, "bad_request"),
            ("/chain/tx/" + "00" * 31, 400, "bad_request"),
            ("/chain/status/" + "42" * 32, 404, "tx_not_found"),
            ("/chain/tx/" + "42" * 32, 404, "tx_not_found"),
            ("/chain/outspend/" + "42" * 32 + "/x", 400, "bad_request")]:
        answer = client.get(path)
        assert (answer.status_code, answer.json["error"]) == (status, error), path
        assert answer.json["error_description"]
    assert client.post("/chain/broadcast", data=b"").json["error"] == "bad_request"
    big = client.post("/chain/broadcast", data=b"\x00" * (MAX_BROADCAST_SIZE + 1))
    assert (big.status_code, big.json["error"]) == (413, "too_large")
    closed = app_for(world.source, allow_broadcast=False).test_client().post("/chain/broadcast", data=b"\x01")
    assert (closed.status_code, closed.json["error"]) == (403, "broadcast_disabled")


def test_broadcast_relays_and_reports_rejections(world, tbs):
    locator, _ = anchor(world, "alice")
    confirmed = world.source.transaction(locator.txid)
    with pytest.raises(TxRejected):
        tbs.broadcast(confirmed)              # already in the chain: the node refuses it
    relayed = []

    class Recorder(Delegating):
        def broadcast(self, raw):
            relayed.append(raw)
            return txid_of(parse_tx(raw))
    recorder = tbs_for(app_for(Recorder(world.source)))
    assert recorder.broadcast(confirmed) == locator.txid and relayed == [confirmed]

    class Liar(Delegating):
        def broadcast(self, raw):
            return b"\x13" * 32
    with pytest.raises(SourceError, match="not our transaction"):
        tbs_for(app_for(Liar(world.source))).broadcast(confirmed)


class Delegating(ChainSource):
    """A source that answers as ``inner`` unless a subclass says otherwise."""

    def __init__(self, inner):
        self.inner = inner
        self.network = inner.network

    def tip(self):
        return self.inner.tip()

    def header(self, height):
        return self.inner.header(height)

    def block(self, block_hash):
        return self.inner.block(block_hash)

    def transaction(self, txid, block_hash=None):
        return self.inner.transaction(txid, block_hash)

    def tx_status(self, txid, block_hash=None):
        return self.inner.tx_status(txid, block_hash)

    def outspend_unverified(self, txid, vout):
        return self.inner.outspend_unverified(txid, vout)

    def broadcast(self, raw):
        return self.inner.broadcast(raw)


def _grind(raw: bytes, *, valid_pow: bool) -> bytes:
    """Change the nonce until the header's proof of work is (or is not) valid for its bits."""
    header = BlockHeader.parse(raw)
    for nonce in range(header.nonce + 1, header.nonce + 10_000):
        candidate = header._replace(nonce=nonce).serialize()
        ok = int.from_bytes(sha256d(candidate), "little") <= header.target
        if ok == valid_pow:
            return candidate
    raise AssertionError("no nonce found")


class LyingHeaders(Delegating):
    """Serves the real headers except at ``height``, where ``forge`` replaces it."""

    def __init__(self, inner, height, forge):
        super().__init__(inner)
        self.height, self.forge = height, forge

    def header(self, height):
        raw = self.inner.header(height)
        return self.forge(raw) if height == self.height else raw


def test_headers_with_bad_proof_of_work_are_refused(world):
    target = world.source.tip().height - 3
    liar = tbs_for(app_for(LyingHeaders(world.source, target, lambda raw: _grind(raw, valid_pow=False))))
    headers = thin_chain(world, liar)
    with pytest.raises(HeaderRejected) as info:
        headers.sync_from(liar)
    assert info.value.rule == "high-hash" and info.value.height == target
    # The honest headers before the forged one were kept; nothing from it on.
    assert headers.tip()[0] == target - 1


def test_headers_with_broken_linkage_are_refused(world):
    target = world.source.tip().height - 3

    def relink(raw):                  # another parent, with a valid proof of work for it
        return _grind(raw[:4] + b"\x55" * 32 + raw[36:], valid_pow=True)
    liar = tbs_for(app_for(LyingHeaders(world.source, target, relink)))
    headers = thin_chain(world, liar)
    with pytest.raises((HeaderRejected, SourceError)) as info:
        headers.sync_from(liar)
    assert getattr(info.value, "rule", None) == "bad-prevblk" or "kept changing" in str(info.value)
    assert headers.tip()[0] == target - 1


def _proof_route(forged: bytes):
    def register(app):
        app.add_url_rule("/chain/proof", "lying_proof", lambda: Response(forged, mimetype="application/octet-stream"))
    return register


def test_a_proof_for_another_transaction_is_refused(world):
    headers = world.headers()
    echo_locator, echo_cert = anchor(world, "echo.example")
    alice_locator, alice_cert = anchor(world, "alice")
    alices = world.identities["alice"].proof.encode()
    liar = tbs_for(app_for(world.source, before=_proof_route(alices)))
    with pytest.raises(AnchorNotFound, match="another (block|transaction) than asked for"):
        resolve_anchor(echo_locator, echo_cert, liar, headers, min_confirmations=1)


def test_a_tampered_proof_fails_against_the_headers(world):
    headers = world.headers()
    locator, certificate = anchor(world, "alice")
    real = world.identities["alice"].proof
    assert real.txid_branch                   # the block holds a coinbase and the anchor at least
    forged = dataclasses.replace(real, txid_branch=(bytes(32),) + real.txid_branch[1:])
    liar = tbs_for(app_for(world.source, before=_proof_route(forged.encode())))
    proof = liar.anchor_proof(locator.txid, locator.block_hash, headers.height_of(locator.block_hash))
    with pytest.raises(ProofMismatch):
        verify_anchor(locator, certificate, proof, headers, min_confirmations=1)
    with pytest.raises(ProofMismatch):
        resolve_anchor(locator, certificate, liar, headers, min_confirmations=1)


def test_malformed_answers_are_source_errors(world):
    def register(app):
        app.add_url_rule("/chain/proof", "junk", lambda: Response(b"\x01junk"))
        app.add_url_rule("/chain/headers", "odd", lambda: Response(b"\x00" * 81))
        app.add_url_rule("/chain/tip", "tip", lambda: Response(b"not json"))
    liar = tbs_for(app_for(world.source, before=register))
    locator, _ = anchor(world, "alice")
    with pytest.raises(SourceError, match="malformed proof"):
        liar.anchor_proof(locator.txid, locator.block_hash, 1)
    with pytest.raises(SourceError, match="not a multiple of 80"):
        liar.headers(0, 5)
    with pytest.raises(SourceError, match="not JSON"):
        liar.tip()


class Lagging(Delegating):
    """A TBS whose chain stops ``behind`` blocks below the real tip."""

    def __init__(self, inner, behind):
        super().__init__(inner)
        self.height = inner.tip().height - behind

    def tip(self):
        return Tip(self.height, sha256d(self.inner.header(self.height)))

    def headers(self, start, count):
        return [self.inner.header(h) for h in range(start, min(start + count, self.height + 1))]


def test_a_source_behind_is_not_used_for_proofs(world):
    headers = world.headers()                     # the PAT already knows the real tip
    lagging = tbs_for(app_for(Lagging(world.source, 3)))
    locator, certificate = anchor(world, "alice")
    with pytest.raises(SourceBehind, match="is behind our best header chain"):
        resolve_anchor(locator, certificate, lagging, headers, min_confirmations=1)


def test_network_mismatch_is_refused(world):
    from milagro_tls.chain.network import Network
    wrong = TbsSource(BASE, network=Network.MAINNET, transport=httpx.WSGITransport(app=app_for(world.source)))
    with pytest.raises(SourceError, match="serves regtest, not mainnet"):
        wrong.tip()


@pytest.fixture
def served_tbs(world, tmp_path):
    """The blueprint on a real loopback HTTPS port (a throwaway self-signed certificate)."""
    from milagro_tls.roles.home import RoleHome
    cert, key = RoleHome(tmp_path, "tbs", "tbs.example").fallback_certificate()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = make_server("127.0.0.1", 0, app_for(world.source), threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join()


def test_spec_opens_a_tbs_over_https_without_verification(world, served_tbs):
    source = open_source(f"tbs://127.0.0.1:{served_tbs}?network=regtest")
    try:
        assert isinstance(source, TbsSource) and source.base_url == f"https://127.0.0.1:{served_tbs}"
        headers = thin_chain(world, source, back=5)
        assert headers.sync_from(source) == 5
        locator, certificate = anchor(world, "alice")
        full = world.headers()
        identity, _ = resolve_anchor(locator, certificate, source, full, min_confirmations=1)
        assert identity.locator == locator
    finally:
        source.close()


@pytest.mark.parametrize("spec", ["tbs://", "tbs://host", "tbs://host:1/path", "tbs://u:p@host:1",
                                  "tbs://host:1?ca=x", "tbs://host:99999"])
def test_bad_tbs_specs(spec):
    with pytest.raises(ValueError):
        open_source(spec)
