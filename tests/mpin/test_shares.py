"""milagro_tls.mpin.shares: master secret files, share algebra, signed shares."""
import json
import os
import pickle
import stat

import pytest

from milagro_tls.chain.network import Network
from milagro_tls.errors import IdentityError
from milagro_tls.identity.keys import IdentityKey, StatementType
from milagro_tls.identity.locator import Locator, LocatorKind
from milagro_tls.mpin import curve, identity, shares
from milagro_tls.mpin.curve import GT, Scalar
from milagro_tls.mpin.errors import (
    InvalidMasterSecret, MalformedShare, ShareMismatch, ShareSignatureError,
)

ID = identity.encode_identity("https://idp.example", "alice")


def locator(n: int) -> Locator:
    return Locator(network=Network.REGTEST, kind=LocatorKind.P2WPKH, txid=bytes([n]) * 32,
                   input_index=0, block_hash=bytes([n + 1]) * 32)


DTA_LOCATOR, RECIPIENT, OTHER = locator(1), locator(5), locator(9)


def test_master_secret_file_is_0600_and_reloads(tmp_path):
    path = tmp_path / "master.key"
    created = shares.MasterSecret.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    loaded = shares.MasterSecret.load(path)
    h = identity.hash_identity(ID)
    assert shares.client_secret_share(created, h) == shares.client_secret_share(loaded, h)
    with pytest.raises(FileExistsError):
        shares.MasterSecret.create(path)
    again = shares.MasterSecret.ensure(path)
    assert shares.server_secret_share(again) == shares.server_secret_share(created)


def test_master_secret_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "master.key"
    shares.MasterSecret.create(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        shares.MasterSecret.load(path)


def test_master_secret_is_never_shown(tmp_path):
    path = tmp_path / "master.key"
    secret = shares.MasterSecret.create(path)
    hex_secret = path.read_text().strip()
    assert hex_secret not in repr(secret) and hex_secret not in str(secret)
    assert repr(secret) == "<MasterSecret (hidden)>"
    assert str(int(hex_secret, 16) % curve.ORDER) not in repr(secret)
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_master_secret_zero_mod_order_is_refused():
    with pytest.raises(InvalidMasterSecret):
        shares.MasterSecret.from_bytes(bytes(32))
    with pytest.raises(InvalidMasterSecret):
        shares.MasterSecret.from_bytes(curve.ORDER.to_bytes(32, "big"))
    with pytest.raises(InvalidMasterSecret):
        shares.MasterSecret.from_bytes(bytes(31))
    # Reduced modulo the order: q + 5 is the secret 5.
    five = shares.MasterSecret.from_bytes((curve.ORDER + 5).to_bytes(32, "big"))
    assert shares.server_secret_share(five) == curve.g2_generator() * Scalar(5)


def test_shares_are_the_master_secret_times_the_points():
    ms = shares.MasterSecret.from_bytes((123456789).to_bytes(32, "big"))
    s = Scalar(123456789)
    h = identity.hash_identity(ID)
    assert shares.client_secret_share(ms, h) == h * s
    assert shares.time_permit_share(ms, h, 19000) == identity.hash_time_permit(19000, h) * s
    assert shares.server_secret_share(ms) == curve.g2_generator() * s


@pytest.mark.parametrize("count", [2, 3])
def test_combined_shares_pair_like_one_master_secret(count):
    masters = [shares.MasterSecret.generate() for _ in range(count)]
    h = identity.hash_identity(ID)
    cs = shares.combine_g1(shares.client_secret_share(m, h) for m in masters)
    ss = shares.combine_g2(shares.server_secret_share(m) for m in masters)
    q = curve.g2_generator()
    assert GT.pairing(cs, q) == GT.pairing(h, ss)
    # One share alone does not match the combined server secret.
    assert GT.pairing(shares.client_secret_share(masters[0], h), q) != GT.pairing(h, ss)


def test_combine_refuses_nothing_and_the_identity():
    with pytest.raises(ValueError):
        shares.combine_g1([])
    with pytest.raises(ValueError):
        shares.combine_g2([])
    p = curve.hash_to_g1(b"p", b"TEST-DST")
    with pytest.raises(curve.MalformedPoint):
        shares.combine_g1([p, -p])
    with pytest.raises(TypeError):
        shares.combine_g1([curve.g2_generator()])


@pytest.fixture(scope="module")
def dta():
    return shares.MasterSecret.generate(), IdentityKey.generate()


def _issue_all(dta, date=19000):
    master, key = dta
    common = dict(dta="dta-one", dta_locator=DTA_LOCATOR, recipient=RECIPIENT, issued=1_700_000_000)
    return (shares.issue_client_secret(master, key, identity=ID, **common),
            shares.issue_time_permit(master, key, identity=ID, date=date, **common),
            shares.issue_server_secret(master, key, **common))


def test_signed_share_json_round_trip_and_verify(dta):
    master, key = dta
    cs, tp, ss = _issue_all(dta)
    for share, kind in ((cs, "client-secret"), (tp, "time-permit"), (ss, "server-secret")):
        wire = json.loads(json.dumps(share.to_json()))
        assert set(wire) == {"share", "signature"}
        assert wire["share"]["kind"] == kind
        assert wire["share"]["dta_locator"] == DTA_LOCATOR.to_json()
        assert wire["share"]["recipient"] == RECIPIENT.to_json()
        parsed = shares.SignedShare.from_json(wire)
        assert parsed.canonical() == share.canonical() and parsed.point == share.point
        assert shares.verify_share(parsed, key.public_key, kind=kind, recipient=RECIPIENT,
                                   dta_locator=DTA_LOCATOR) is parsed
        # The signature is BIP340 over the tagged hash of the RFC 8785 statement.
        assert IdentityKey.verify_statement(key.public_key, StatementType.SHARE,
                                            share.canonical(), share.signature)
    assert cs.to_json()["share"]["id"] == ID.hex() and cs.to_json()["share"]["date"] is None
    assert tp.to_json()["share"]["date"] == 19000
    assert ss.to_json()["share"]["id"] is None and ss.to_json()["share"]["date"] is None
    assert cs.point == shares.client_secret_share(master, identity.hash_identity(ID))
    assert ss.point == shares.server_secret_share(master)
    assert cs.canonical().startswith(b'{"date":null,"dta":"dta-one"')
    assert len(cs.digest()) == 32


def test_signed_share_repr_hides_the_point(dta):
    cs, _, ss = _issue_all(dta)
    for share in (cs, ss):
        point_hex = share.to_json()["share"]["point"]
        assert point_hex not in repr(share) and point_hex[:8] not in repr(share)
        assert "hidden" in str(share)


@pytest.mark.parametrize("field,value", [
    ("dta", "dta-two"), ("issued", 1_700_000_001), ("date", 19001),
    ("id", identity.encode_identity("https://idp.example", "bob").hex()),
    ("recipient", OTHER.to_json()), ("dta_locator", OTHER.to_json()),
])
def test_tampered_share_fails_its_signature(dta, field, value):
    _, tp, _ = _issue_all(dta)
    wire = tp.to_json()
    wire["share"][field] = value
    with pytest.raises(ShareSignatureError):
        shares.verify_share(shares.SignedShare.from_json(wire), dta[1].public_key)


def test_tampered_point_or_signature_fails(dta):
    cs, _, _ = _issue_all(dta)
    wire = cs.to_json()
    wire["share"]["point"] = curve.encode_g1(cs.point + curve.g1_generator()).hex()
    with pytest.raises(ShareSignatureError):
        shares.verify_share(shares.SignedShare.from_json(wire), dta[1].public_key)
    wire = cs.to_json()
    sig = bytearray.fromhex(wire["signature"])
    sig[10] ^= 1
    wire["signature"] = sig.hex()
    with pytest.raises(ShareSignatureError):
        shares.verify_share(shares.SignedShare.from_json(wire), dta[1].public_key)


def test_share_from_another_dta_key_fails(dta):
    cs, _, _ = _issue_all(dta)
    with pytest.raises(ShareSignatureError):
        shares.verify_share(cs, IdentityKey.generate().public_key)
    with pytest.raises(ShareSignatureError):
        shares.verify_share(cs, b"\x02" + bytes(32))


def test_expectations_are_checked_after_the_signature(dta):
    cs, tp, _ = _issue_all(dta)
    pub = dta[1].public_key
    with pytest.raises(ShareMismatch, match="expected a time-permit"):
        shares.verify_share(cs, pub, kind="time-permit")
    with pytest.raises(ShareMismatch, match="another identity"):
        shares.verify_share(cs, pub, identity=identity.encode_identity("https://idp.example", "bob"))
    with pytest.raises(ShareMismatch, match="date"):
        shares.verify_share(tp, pub, date=19001)
    with pytest.raises(ShareMismatch, match="recipient"):
        shares.verify_share(tp, pub, recipient=OTHER)
    with pytest.raises(ShareMismatch, match="D-TA locator"):
        shares.verify_share(tp, pub, dta_locator=OTHER)
    assert shares.verify_share(tp, pub, identity=ID, date=19000) is tp


def _wire(dta):
    return _issue_all(dta)[1].to_json()


@pytest.mark.parametrize("mutate", [
    lambda w: w.pop("signature"),
    lambda w: w.update(extra=1),
    lambda w: w["share"].pop("issued"),
    lambda w: w["share"].update(extra=1),
    lambda w: w["share"].update(kind="master-secret"),
    lambda w: w["share"].update(kind=["time-permit"]),
    lambda w: w["share"].update(point="00" * 48),
    lambda w: w["share"].update(point=curve.encode_g2(curve.g2_generator()).hex()),
    lambda w: w["share"].update(point=5),
    lambda w: w["share"].update(id=None),
    lambda w: w["share"].update(id="zz"),
    lambda w: w["share"].update(id="0001"),
    lambda w: w["share"].update(date=None),
    lambda w: w["share"].update(date=True),
    lambda w: w["share"].update(date=-1),
    lambda w: w["share"].update(issued="now"),
    lambda w: w["share"].update(dta=""),
    lambda w: w["share"].update(recipient={"version": 1}),
    lambda w: w["share"].update(dta_locator="x"),
    lambda w: w.update(signature="00" * 63),
    lambda w: w.update(signature="xyz"),
])
def test_malformed_signed_shares_are_refused(dta, mutate):
    wire = _wire(dta)
    mutate(wire)
    with pytest.raises(MalformedShare):
        shares.SignedShare.from_json(wire)


def test_kind_field_consistency_is_enforced(dta):
    cs, _, ss = _issue_all(dta)
    wire = cs.to_json()
    wire["share"]["date"] = 19000                 # a client secret has no date
    with pytest.raises(MalformedShare):
        shares.SignedShare.from_json(wire)
    wire = ss.to_json()
    wire["share"]["id"] = ID.hex()                # a server secret names no identity
    with pytest.raises(MalformedShare):
        shares.SignedShare.from_json(wire)
    with pytest.raises(MalformedShare):
        shares.SignedShare.from_json("not json object")
