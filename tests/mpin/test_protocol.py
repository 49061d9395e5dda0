"""milagro_tls.mpin.protocol: the 2-pass M-Pin with distributed shares, and every way it fails."""
import json

import pytest

from milagro_tls.mpin import curve, identity, shares
from milagro_tls.mpin.errors import (
    AuthenticationFailed, ExpiredPermit, InvalidPin, MalformedMessage, ProtocolStateError,
)
from milagro_tls.mpin.protocol import (
    Challenge, MpinClient, MpinServer, Pass1, Pass2, PendingAuth, extract_pin,
)

DAY = 20_000
PIN = 1234
ALICE = identity.encode_identity("https://idp.example", "alice")
BOB = identity.encode_identity("https://idp.example", "bob")


def credential(masters, who=ALICE, pin=PIN, date=DAY):
    """What a client holds after combining its D-TAs' shares: (token, permit)."""
    h = identity.hash_identity(who)
    cs = shares.combine_g1(shares.client_secret_share(m, h) for m in masters)
    tp = shares.combine_g1(shares.time_permit_share(m, h, date) for m in masters)
    return extract_pin(cs, h, pin), tp


def server_for(masters, today=DAY):
    return MpinServer(shares.combine_g2(shares.server_secret_share(m) for m in masters), today=today)


def run(client, server, pin, *, wire=True):
    """Both passes, through JSON on the wire as an HTTP service would do it."""
    p1 = client.pass1()
    if wire:
        p1 = Pass1.from_json(json.loads(json.dumps(p1.to_json())))
    pending = server.begin(p1)
    if wire:
        pending = PendingAuth.from_json(json.loads(json.dumps(pending.to_json())))
    challenge = pending.challenge
    if wire:
        challenge = Challenge.from_json(json.loads(json.dumps(challenge.to_json())))
    p2 = client.pass2(challenge, pin)
    if wire:
        p2 = Pass2.from_json(json.loads(json.dumps(p2.to_json())))
    return server.finish(pending, p2)


@pytest.fixture(scope="module")
def masters():
    return [shares.MasterSecret.generate() for _ in range(3)]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_right_pin_authenticates(masters, count):
    token, tp = credential(masters[:count])
    result = run(MpinClient(token, tp, ALICE, DAY), server_for(masters[:count]), PIN)
    assert (result.issuer, result.sub) == ("https://idp.example", "alice")


def test_pin_as_digit_string(masters):
    token, tp = credential(masters[:2], pin="0042")
    assert run(MpinClient(token, tp, ALICE, DAY), server_for(masters[:2]), "42").sub == "alice"


def test_token_is_not_the_client_secret(masters):
    h = identity.hash_identity(ALICE)
    cs = shares.combine_g1(shares.client_secret_share(m, h) for m in masters[:2])
    token = extract_pin(cs, h, PIN)
    assert token != cs
    assert token + h * curve.Scalar(PIN) == cs


@pytest.mark.parametrize("wrong", [0, 1233, 1235, 4321, "12340"])
def test_wrong_pin_fails(masters, wrong):
    token, tp = credential(masters[:2])
    with pytest.raises(AuthenticationFailed, match="wrong PIN"):
        run(MpinClient(token, tp, ALICE, DAY), server_for(masters[:2]), wrong)


def test_one_share_alone_fails(masters):
    token, tp = credential(masters[:1])
    with pytest.raises(AuthenticationFailed):
        run(MpinClient(token, tp, ALICE, DAY), server_for(masters[:2]), PIN)


def test_share_from_an_unrelated_third_dta_fails(masters):
    # The service uses D-TAs 0 and 1; the client combined D-TA 0 with the unrelated D-TA 2.
    token, tp = credential([masters[0], masters[2]])
    with pytest.raises(AuthenticationFailed):
        run(MpinClient(token, tp, ALICE, DAY), server_for(masters[:2]), PIN)
    # An extra share on top of the right ones fails too.
    token, tp = credential(masters)
    with pytest.raises(AuthenticationFailed):
        run(MpinClient(token, tp, ALICE, DAY), server_for(masters[:2]), PIN)


def test_expired_permit_is_refused_before_any_pairing(masters):
    token, tp = credential(masters[:2], date=DAY - 1)
    client = MpinClient(token, tp, ALICE, DAY - 1)
    with pytest.raises(ExpiredPermit, match=f"day {DAY - 1}.*day {DAY}"):
        server_for(masters[:2]).begin(client.pass1())


def test_permit_of_another_day_claimed_as_today_fails(masters):
    token, old_tp = credential(masters[:2], date=DAY - 1)
    with pytest.raises(AuthenticationFailed):
        run(MpinClient(token, old_tp, ALICE, DAY), server_for(masters[:2]), PIN)


def test_no_permit_fails(masters):
    token, _ = credential(masters[:2])
    h = identity.hash_identity(ALICE)
    fake_tp = identity.hash_time_permit(DAY, h)          # a point, but not s·H_T
    with pytest.raises(AuthenticationFailed):
        run(MpinClient(token, fake_tp, ALICE, DAY), server_for(masters[:2]), PIN)


def test_credential_of_another_identity_fails(masters):
    token, tp = credential(masters[:2], who=BOB)
    with pytest.raises(AuthenticationFailed):
        run(MpinClient(token, tp, ALICE, DAY), server_for(masters[:2]), PIN)


def test_server_date_from_begin_argument_and_clock(masters):
    token, tp = credential(masters[:2], date=identity.today())
    server = MpinServer(shares.combine_g2(shares.server_secret_share(m) for m in masters[:2]))
    client = MpinClient(token, tp, ALICE, identity.today())
    pending = server.begin(client.pass1())
    assert server.finish(pending, client.pass2(pending.challenge, PIN)).sub == "alice"
    with pytest.raises(ExpiredPermit):
        server.begin(MpinClient(token, tp, ALICE, identity.today()).pass1(),
                     today=identity.today() + 1)


def test_replayed_pass2_against_a_new_challenge_fails(masters):
    token, tp = credential(masters[:2])
    server = server_for(masters[:2])
    client = MpinClient(token, tp, ALICE, DAY)
    p1 = client.pass1()
    pending = server.begin(p1)
    p2 = client.pass2(pending.challenge, PIN)
    assert server.finish(pending, p2).sub == "alice"
    fresh = server.begin(p1)                      # same U, fresh y
    assert fresh.y != pending.y
    with pytest.raises(AuthenticationFailed):
        server.finish(fresh, p2)


def test_client_passes_run_once_in_order(masters):
    token, tp = credential(masters[:2])
    client = MpinClient(token, tp, ALICE, DAY)
    with pytest.raises(ProtocolStateError):
        client.pass2(Challenge(curve.random_scalar()), PIN)
    client.pass1()
    with pytest.raises(ProtocolStateError):
        client.pass1()
    client.pass2(Challenge(curve.random_scalar()), PIN)
    with pytest.raises(ProtocolStateError):
        client.pass2(Challenge(curve.random_scalar()), PIN)


@pytest.mark.parametrize("pin", [-1, curve.ORDER, "", "12a4", "١٢٣", 12.0, True, None])
def test_invalid_pins_are_refused(masters, pin):
    token, tp = credential(masters[:1])
    h = identity.hash_identity(ALICE)
    with pytest.raises(InvalidPin):
        extract_pin(token, h, pin)
    client = MpinClient(token, tp, ALICE, DAY)
    client.pass1()
    with pytest.raises(InvalidPin):
        client.pass2(Challenge(curve.random_scalar()), pin)


def test_secrets_are_not_in_repr(masters):
    token, tp = credential(masters[:2])
    client = MpinClient(token, tp, ALICE, DAY)
    server = server_for(masters[:2])
    for secret in (curve.encode_g1(token).hex(), curve.encode_g1(tp).hex()):
        assert secret[:16] not in repr(client)
    assert "hidden" in repr(server) and curve.encode_g2(server._ss).hex()[:16] not in repr(server)


def _good_pass1(masters):
    token, tp = credential(masters[:1])
    return MpinClient(token, tp, ALICE, DAY).pass1().to_json()


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("u"),
    lambda d: d.update(extra=1),
    lambda d: d.update(u="00" * 48),
    lambda d: d.update(u=curve.G1Point.identity().to_compressed_bytes().hex()),
    lambda d: d.update(u=curve.encode_g2(curve.g2_generator()).hex()),
    lambda d: d.update(u=1),
    lambda d: d.update(id="zz"),
    lambda d: d.update(id="00"),
    lambda d: d.update(id=None),
    lambda d: d.update(date="20000"),
    lambda d: d.update(date=-1),
    lambda d: d.update(date=False),
])
def test_malformed_pass1_is_refused(masters, mutate):
    doc = _good_pass1(masters)
    mutate(doc)
    with pytest.raises(MalformedMessage):
        Pass1.from_json(doc)


@pytest.mark.parametrize("doc", [
    {}, {"v": None}, {"v": "00" * 48}, {"v": "c0" + "00" * 47}, {"v": "ab"}, [], "v",
])
def test_malformed_pass2_is_refused(doc):
    with pytest.raises(MalformedMessage):
        Pass2.from_json(doc)


@pytest.mark.parametrize("doc", [
    {"y": "00" * 32}, {"y": curve.ORDER.to_bytes(32, "big").hex()}, {"y": "01"}, {"y": 1}, {},
])
def test_malformed_challenge_is_refused(doc):
    with pytest.raises(MalformedMessage):
        Challenge.from_json(doc)


def test_pending_auth_round_trip(masters):
    server = server_for(masters[:1])
    pending = server.begin(Pass1.from_json(_good_pass1(masters)))
    back = PendingAuth.from_json(pending.to_json())
    assert back == pending
    with pytest.raises(MalformedMessage):
        PendingAuth.from_json({**pending.to_json(), "y": "00" * 32})
