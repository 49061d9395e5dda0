import json

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.network import Network
from milagro_tls.cli import main


def test_headers_sync_verifies_and_persists(tmp_path, capsys):
    chain, store = tmp_path / "chain", tmp_path / "headers.sqlite"
    with EmbeddedSource.open(chain) as source:
        source.mine(30)
        tip = source.tip()
    assert main(["chain", "headers", "sync", "--chain", f"regtest://{chain}", "--headers", str(store)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["added"], first["height"]) == (30, 30)
    assert bytes.fromhex(first["tip"])[::-1] == tip.block_hash
    # A second sync adds nothing; the file holds the verified chain.
    assert main(["chain", "headers", "sync", "--chain", f"regtest://{chain}", "--headers", str(store)]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 0
    with HeaderChain(str(store), Network.REGTEST) as headers:
        assert headers.tip() == (30, tip.block_hash)
