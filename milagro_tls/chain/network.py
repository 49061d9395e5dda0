"""Networks and their parameters.

The numeric values are the ones the locator puts on the wire (rfc/ has the table).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from .hashes import from_display_hex


class Network(enum.IntEnum):
    #: Bitcoin mainnet.
    MAINNET = 0
    #: testnet3 (BIP given by Core's chainparams).
    TESTNET3 = 1
    #: testnet4 (BIP94).
    TESTNET4 = 2
    #: The default signet.
    SIGNET = 3
    #: Local regression-test chain; the embedded node runs one.
    REGTEST = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> "Network":
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown network {label!r}") from None

    @property
    def core_chain(self) -> str:
        """The name Bitcoin Core uses (getblockchaininfo's ``chain``, ``-chain=``)."""
        return _CORE_CHAIN[self]

    @classmethod
    def from_core_chain(cls, name: str) -> "Network":
        for network, core_name in _CORE_CHAIN.items():
            if core_name == name:
                return network
        raise ValueError(f"unknown Bitcoin Core chain {name!r}")


_CORE_CHAIN = {Network.MAINNET: "main", Network.TESTNET3: "test", Network.TESTNET4: "testnet4",
               Network.SIGNET: "signet", Network.REGTEST: "regtest"}


@dataclass(frozen=True, slots=True)
class NetworkParams:
    network: Network
    genesis_hash: bytes          # wire order
    pow_limit_bits: int          # compact form of the highest allowed target
    no_retargeting: bool         # regtest: nBits never changes
    allow_min_difficulty: bool   # testnets' 20-minute rule
    halving_interval: int
    coinbase_maturity: int = 100
    bech32_hrp: str = "bc"


PARAMS: dict[Network, NetworkParams] = {
    Network.MAINNET: NetworkParams(
        Network.MAINNET,
        from_display_hex("000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"),
        0x1D00FFFF, False, False, 210_000, bech32_hrp="bc"),
    Network.TESTNET3: NetworkParams(
        Network.TESTNET3,
        from_display_hex("000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943"),
        0x1D00FFFF, False, True, 210_000, bech32_hrp="tb"),
    Network.TESTNET4: NetworkParams(
        Network.TESTNET4,
        from_display_hex("00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043"),
        0x1D00FFFF, False, True, 210_000, bech32_hrp="tb"),
    Network.SIGNET: NetworkParams(
        Network.SIGNET,
        from_display_hex("00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6"),
        0x1E0377AE, False, False, 210_000, bech32_hrp="tb"),
    Network.REGTEST: NetworkParams(
        Network.REGTEST,
        from_display_hex("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"),
        0x207FFFFF, True, True, 150, bech32_hrp="bcrt"),
}
