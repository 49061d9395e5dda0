"""Property tests of what chain sources answer: every ChainSource read of the JSON-RPC
(rpc_parse/rpc_steps), Esplora REST (esplora_steps) and tbs:// (tbs_source) clients, fed any
status and body through httpx.MockTransport. A lying or broken server may make a read fail, but
only with a ChainError (SourceError and its kin), never a KeyError, TypeError, RecursionError or
decimal exception; and the embedded chain's Esplora REST routes (esplora_rest) answer any path
with a status, never a traceback."""
from __future__ import annotations

import json
from decimal import Decimal

import httpx
from hypothesis import given
from hypothesis import strategies as st

from milagro_tls.chain.errors import ChainError
from milagro_tls.chain.esplora import EsploraSource
from milagro_tls.chain.network import Network
from milagro_tls.chain.rpc_client import RpcSource
from milagro_tls.chain.rpc_parse import fee_rate_from_estimate, sats, translate_error, unwrap
from milagro_tls.chain.tbs_source import TbsSource
from milagro_tls.chain.transport import RetryPolicy

from .support import fuzz, hex_of, json_scalars, json_values, parses_or_refuses

ONCE = RetryPolicy(tries=1, base_delay=0, max_delay=0)
TXID = bytes(range(32))
BLOCK = bytes(range(32, 64))
SCRIPT = bytes.fromhex("0014" + "ab" * 20)
#: A minimal transaction (one input, one output): broadcast needs bytes that parse.
RAW_TX = bytes.fromhex("02000000" "01" + "11" * 32 + "00000000" "00" "ffffffff" "01" "e803000000000000" "16"
                       "0014" + "ab" * 20 + "00000000")

#: Keys the three APIs use; a structured body draws from them so that reads get past "missing".
KEYS = ["height", "hash", "network", "txid", "block_hash", "spent", "error", "result", "status", "confirmed",
        "block_height", "value", "scriptpubkey", "vout", "feerate", "blocks", "bestblockhash", "chain",
        "code", "message", "confirmations", "blockhash", "success", "unspents", "scriptPubKey", "amount",
        "reason", "in_best_chain", "id", "hex", "vin", "headers", "errors", "coinbase", "1", "6"]
plausible = st.one_of(json_scalars, hex_of(32), hex_of(80), st.sampled_from(
    ["regtest", "main", "test", "testnet4", "signet", "1e999999", "NaN", "-0"]),
    st.integers(-5, 10), st.decimals(allow_nan=True, allow_infinity=True).map(lambda d: str(d)))
structured = st.recursive(plausible, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.sampled_from(KEYS), inner, max_size=8), max_leaves=20)
bodies = st.one_of(st.binary(max_size=120), json_values.map(lambda v: json.dumps(v).encode()),
                   structured.map(lambda v: json.dumps(v).encode()),
                   st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
                   st.sampled_from([b"1e999999", b'{"feerate": 1e999999}', b"NaN", b'{"6": Infinity}',
                                    '{"\u00b2": 1}'.encode(), b"[" * 3000, b"[" * 3000 + b"]" * 3000]))
statuses = st.sampled_from([200, 200, 200, 200, 400, 404, 500])


def _reply(data):
    """A MockTransport handler drawing each answer from hypothesis."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(data.draw(statuses, label="status"), content=data.draw(bodies, label="body"))
    return handler


def _rpc_reply(data):
    """JSON-RPC envelopes with the request's ids (and sometimes wrong ones) around any result."""
    def one(call):
        result = data.draw(st.one_of(structured, hex_of(), hex_of(80)), label="result")
        error = data.draw(st.one_of(st.none(), st.none(), structured), label="error")
        ident = data.draw(st.sampled_from([call["id"], call["id"], call["id"] + 1, None, "x"]), label="id")
        return {"result": result, "error": error, "id": ident}

    def handler(request: httpx.Request) -> httpx.Response:
        if data.draw(st.integers(0, 5), label="raw?") == 0:
            return httpx.Response(data.draw(statuses), content=data.draw(bodies))
        calls = json.loads(request.content)
        body = [one(c) for c in calls] if isinstance(calls, list) else one(calls)
        return httpx.Response(data.draw(statuses), content=json.dumps(body).encode())
    return handler


READS = [
    ("network", lambda s: s.network),
    ("tip", lambda s: s.tip()),
    ("header", lambda s: s.header(5)),
    ("headers", lambda s: s.headers(0, 3)),
    ("block", lambda s: s.block(BLOCK)),
    ("transaction", lambda s: s.transaction(TXID, BLOCK)),
    ("tx_status", lambda s: s.tx_status(TXID, BLOCK)),
    ("outspend", lambda s: s.outspend_unverified(TXID, 0)),
    ("broadcast", lambda s: s.broadcast(RAW_TX)),
]
MORE_READS = [
    ("utxos", lambda s: s.utxos_unverified(SCRIPT)),
    ("fee_rate", lambda s: s.fee_rate_unverified(6)),
]


def _exercise(source, read):
    with source:
        parses_or_refuses(read, source, ChainError)


@fuzz
@given(st.data(), st.sampled_from(READS + MORE_READS), st.sampled_from([None, Network.REGTEST]))
def test_esplora_answers_fail_with_chain_errors_only(data, read, network):
    _exercise(EsploraSource("http://esplora.test", network=network, retry=ONCE,
                            transport=httpx.MockTransport(_reply(data))), read[1])


@fuzz
@given(st.data(), st.sampled_from(READS + MORE_READS), st.sampled_from([None, Network.REGTEST]))
def test_rpc_answers_fail_with_chain_errors_only(data, read, network):
    _exercise(RpcSource("http://rpc.test", ("u", "p"), network=network, retry=ONCE,
                        transport=httpx.MockTransport(_rpc_reply(data))), read[1])


@fuzz
@given(st.data(), st.sampled_from(READS + [("anchor_proof", lambda s: s.anchor_proof(TXID, BLOCK, 5))]),
       st.sampled_from([None, Network.REGTEST]))
def test_tbs_source_answers_fail_with_chain_errors_only(data, read, network):
    _exercise(TbsSource("http://tbs.test", network=network, retry=ONCE,
                        transport=httpx.MockTransport(_reply(data))), read[1])


# --- rpc_parse's pure functions -----------------------------------------------------------------

@fuzz
@given(st.one_of(json_values, structured, st.decimals(allow_nan=True, allow_infinity=True),
                 st.text(max_size=12), st.sampled_from(["1e999999", "-1e-999999", "sNaN", "1E+400000000"])))
def test_sats_and_fee_rate_refuse_with_source_errors_only(value):
    amount = parses_or_refuses(sats, value, ChainError)
    assert amount is None or (type(amount) is int and amount >= 0)
    rate = parses_or_refuses(fee_rate_from_estimate, {"feerate": value}, ChainError)
    assert rate is None or (isinstance(rate, float) and 0 < rate < float("inf"))


@fuzz
@given(structured, st.lists(json_scalars, max_size=3), st.sampled_from(
    ["getrawtransaction", "sendrawtransaction", "getblockhash", "gettxoutproof", "milagro_outspend", "getblock"]))
def test_rpc_errors_translate_to_chain_errors(error, params, method):
    assert isinstance(translate_error(method, params, error), ChainError)
    parses_or_refuses(lambda reply: unwrap(reply, method, params), {"result": None, "error": error}, ChainError)
    parses_or_refuses(lambda reply: unwrap(reply, method, params), error, ChainError)


def test_a_well_formed_rpc_reply_unwraps():
    assert unwrap({"result": {"a": 1}, "error": None, "id": 0}, "getblock") == {"a": 1}
    assert sats(Decimal("0.00001")) == 1000


def test_absurd_amounts_and_fee_rates_are_source_errors():
    # Findings: sats("1e999999") raised decimal.Overflow, sats("1e99990") spent ~0.6 s in int()
    # before a ValueError, and estimatesmartfee's NaN, infinity or overflowing feerates came back
    # as rates (NaN) or raised Overflow.
    for value in ("1e999999", "1e99990", Decimal("1e-999999"), float("nan"), float("inf"), 21_000_001):
        try:
            sats(value)
        except ChainError:
            pass
        else:
            raise AssertionError(f"sats({value!r}) passed")
    for rate in (float("nan"), float("inf"), Decimal("1e999999"), Decimal("1e-999999"), Decimal("NaN")):
        try:
            fee_rate_from_estimate({"feerate": rate})
        except ChainError:
            pass
        else:
            raise AssertionError(f"fee rate {rate!r} passed")
    assert fee_rate_from_estimate({"feerate": Decimal("0.00001")}) == 1.0
    assert fee_rate_from_estimate({"feerate": -1}) is None


DEEP = b"[" * 3000 + b"]" * 3000


def _fixed(body: bytes, status: int = 200):
    return httpx.MockTransport(lambda request: httpx.Response(status, content=body))


def test_deeply_nested_answers_are_source_errors():
    # Finding: json.loads raised RecursionError out of EsploraSource and RpcSource reads (and
    # TbsSource's, for answers within its bound).
    small = b"[" * 1200 + b"]" * 1200
    for make in (lambda t: EsploraSource("http://e.test", network=Network.REGTEST, retry=ONCE, transport=t),
                 lambda t: RpcSource("http://r.test", ("u", "p"), network=Network.REGTEST, retry=ONCE, transport=t),
                 lambda t: TbsSource("http://t.test", retry=ONCE, transport=t)):
        for body, status, read in ((DEEP, 200, lambda s: s.fee_rate_unverified(6)), (small, 200, lambda s: s.tip()),
                                   (small, 404, lambda s: s.tx_status(TXID)),
                                   (b"sendrawtransaction RPC error: " + DEEP, 400, lambda s: s.broadcast(RAW_TX))):
            with make(_fixed(body, status)) as source:
                try:
                    result = read(source)
                except ChainError:
                    continue
                # Only "no estimate" may come back (a tbs:// source asks nobody for fee rates).
                assert result is None, f"{type(source).__name__} accepted a nested answer"


def test_esplora_fee_estimates_refuse_non_rates():
    # Findings: {"6": Infinity} came back as an infinite fee rate, and a target "²" (str.isdigit)
    # raised ValueError from int().
    for body in (b'{"6": Infinity}', b'{"6": NaN}', '{"\u00b2": 1}'.encode(), b'{"6": 1' + b"0" * 400 + b"}"):
        with EsploraSource("http://e.test", network=Network.REGTEST, retry=ONCE, transport=_fixed(body)) as source:
            try:
                source.fee_rate_unverified(6)
            except ChainError:
                continue
            raise AssertionError(f"fee estimates {body[:20]!r} gave a rate")
    with EsploraSource("http://e.test", network=Network.REGTEST, retry=ONCE,
                       transport=_fixed(b'{"2": 5.5, "6": 2, "144": 1}')) as source:
        assert source.fee_rate_unverified(6) == 2.0
