"""``milagro wallet address|balance|bump|rebroadcast`` and ``milagro identity confirm`` on the embedded chain."""
from __future__ import annotations

import json

from milagro_tls.chain.network import Network
from milagro_tls.chain.script_text import address_to_script
from milagro_tls.cli import main
from milagro_tls.cli.identity_commands import WAITING
from milagro_tls.identity.wallet import DEFAULT_LOW_BALANCE, load_fee_key


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_an_anchor_waits_is_bumped_and_confirms(tmp_path, capsys):
    chain, home = tmp_path / "chain", tmp_path / "home"
    spec = f"regtest://{chain}"
    wallet_args = ("--home", str(home), "--chain", spec)
    assert _run(capsys, "chain", "init", "--chain-dir", str(chain))[0] == 0

    code, out, _ = _run(capsys, "wallet", "address", *wallet_args)
    shown = json.loads(out)
    assert code == 0 and shown["network"] == "regtest" and shown["address"].startswith("bcrt1q")
    assert address_to_script(shown["address"], Network.REGTEST) == load_fee_key(home).p2wpkh_script

    code, out, _ = _run(capsys, "wallet", "balance", *wallet_args)
    balance = json.loads(out)
    assert (balance["confirmed"], balance["unconfirmed"], balance["pending"]) == (0, 0, [])
    assert f"below {DEFAULT_LOW_BALANCE} sat" in balance["warning"] and shown["address"] in balance["warning"]

    # Anchored but not mined: the CLI says it is waiting and how to finish.
    code, out, _ = _run(capsys, "identity", "create", *wallet_args, "--role", "tbs", "--name", "log.example",
                        "--confirm", "0")
    assert code == 0 and out.startswith("waiting for confirmation of anchor ")
    anchor_txid = out.split()[5].rstrip(";")
    assert "milagro identity confirm log.example" in out
    code, out, _ = _run(capsys, "identity", "confirm", "log.example", *wallet_args)
    assert code == WAITING and out.startswith("waiting for confirmation")

    code, out, _ = _run(capsys, "wallet", "balance", *wallet_args)
    balance = json.loads(out)
    assert balance["unconfirmed"] > 0 and anchor_txid in balance["pending"] and len(balance["pending"]) == 2

    code, out, err = _run(capsys, "wallet", "bump", anchor_txid, "--fee-rate", "8", *wallet_args)
    assert code == 0, err
    bumped = json.loads(out)
    assert bumped["parent"] == anchor_txid and bumped["target_fee_rate"] == 8.0

    code, out, _ = _run(capsys, "wallet", "rebroadcast", *wallet_args)
    assert json.loads(out) == {"resent": [], "pending": balance["pending"] + [bumped["child"]]}

    assert _run(capsys, "chain", "mine", "1", "--chain-dir", str(chain))[0] == 0
    code, out, _ = _run(capsys, "identity", "confirm", "log.example", *wallet_args)
    locator = json.loads(out)
    assert code == 0 and locator["txid"] == anchor_txid
    code, out, _ = _run(capsys, "identity", "show", "log.example", "--home", str(home), "--trust-entry")
    assert json.loads(out)["locator"] == locator

    # A confirmed parent cannot be bumped: one line, exit 1.
    code, out, err = _run(capsys, "wallet", "bump", anchor_txid, "--fee-rate", "20", *wallet_args)
    assert code == 1 and err.count("\n") == 1 and err.startswith("WalletError:") and "already confirmed" in err


def test_bump_rejects_a_malformed_txid(tmp_path, capsys):
    chain = tmp_path / "chain"
    try:
        main(["wallet", "bump", "xyz", "--home", str(tmp_path / "home"), "--chain", f"regtest://{chain}"])
    except SystemExit as exc:
        assert "is not a txid" in str(exc)
    else:
        raise AssertionError("a malformed txid was accepted")
