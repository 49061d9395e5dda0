"""The ecosystem on loopback, each role a separate process started with its own command line
(what an operator would type), in a working directory:

    chain/    ``milagro chain init`` + ``milagro chain serve`` (the node every role reaches)
    miner     ``python -m milagro_tls.demo.miner`` (blocks on the clock or on demand)
    idp/      ``milagro idp user add`` + ``milagro idp serve``
    dta-a/, dta-b/   ``milagro dta serve --idp ISSUER --idp-trust FILE`` (the IdP pinned)
    service/  ``milagro service init``, ``milagro dta service add`` at both D-TAs,
              ``milagro service serve --dta ... --dta-trust FILE``
    tbs/      ``milagro tbs serve`` and ``milagro tbs admin group add|default`` (the device group:
              the D-TAs' URLs and the D-TAs', IdP's and service's trust entries, verified on the
              chain by the TBS before it stores them)

Each role anchors its own identity on its first start. The PATs reach the TBS, the D-TAs and
the service through RecordingProxy (milagro_tls.capture) when ``capture`` is on, so that
their handshakes can be written as pcap files; the D-TA URLs in the device group are then the
proxies' (what the PATs are told is what they use).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..capture.recorder import RecordingProxy
from ..chain.hashes import sha256d, to_display_hex
from ..identity.party import Party
from .miner import MinerControl
from .processes import Processes, milagro_argv, run

USER, PASSWORD = "alice", "correct horse battery staple"
DTA_NAMES = ("dta-a", "dta-b")
SERVICE_NAME = "service"
GROUP = "demo-devices"


@dataclass
class Role:
    name: str
    home: Path
    url: str               # where the role listens (https://localhost:PORT)
    port: int
    ca_file: str
    locator: dict | None = None
    pid: int | None = None

    def party(self) -> Party:
        return Party.load(self.home, self.name)


@dataclass
class Deployment:
    workdir: Path
    processes: Processes
    capture: bool = True
    workers: int = 1
    gather: float = 4.0
    batch_wait: float = 60.0
    max_batch: int = 128
    say: Callable[[str], None] = print
    chain_dir: Path = field(init=False)
    roles: dict[str, Role] = field(default_factory=dict)
    proxies: dict[str, RecordingProxy] = field(default_factory=dict)
    miner: MinerControl | None = None
    checkpoint: str | None = None
    source: Any = None                  # the demo's own RpcSource on the chain server (summary facts)

    def __post_init__(self) -> None:
        self.chain_dir = self.workdir / "chain"

    @property
    def chain(self) -> str:
        return f"regtest://{self.chain_dir}"

    # --- the chain ---------------------------------------------------------------------------
    def start_chain(self) -> dict:
        init = run("chain init", "chain", "init", "--chain-dir", self.chain_dir)
        served = self.processes.start("chain", milagro_argv("chain", "serve", "--chain-dir", self.chain_dir))
        from ..chain.spec import open_regtest
        self.source = open_regtest(self.chain_dir)
        # The checkpoint a device ships with: this tip, below every role's anchor.
        tip = self.source.tip()
        self.checkpoint = f"{tip.height}:{to_display_hex(sha256d(self.source.header(tip.height)))}"
        self.say(f"chain node: regtest in {self.chain_dir}, height {init['height']}, "
                 f"JSON-RPC + Esplora on port {served.announced.get('port')}")
        return served.announced

    def start_miner(self, every: float = 1.0) -> None:
        import sys
        child = self.processes.start("miner", [sys.executable, "-m", "milagro_tls.demo.miner", "--chain-dir",
                                               str(self.chain_dir), "--every", str(every)], stdin=True)
        self.miner = MinerControl(child)
        self.say(f"miner: pid {child.pid}, a block every {every:g} s while the demo waits, or on demand")

    # --- the roles ----------------------------------------------------------------------------
    def _serve(self, label: str, home: Path, argv: list[str]) -> dict:
        home.mkdir(parents=True, exist_ok=True)
        child = self.processes.start(label, argv)
        return {**child.announced, "pid": child.pid}

    def start_idp(self) -> Role:
        home = self.workdir / "idp"
        home.mkdir(parents=True, exist_ok=True)
        run("IdP user", "idp", "user", "add", "--home", home, USER, "--password", PASSWORD)
        a = self._serve("idp", home, milagro_argv("idp", "serve", "--home", home, "--chain", self.chain, "--port", "0",
                                                  "--workers", self.workers))
        role = Role("idp", home, a["issuer"], a["listening"], a["ca_file"], pid=a["pid"])
        role.locator = role.party().locator.to_json()
        self.roles["idp"] = role
        self.say(f"IdP: {role.url} (pid {role.pid}), user {USER}")
        return role

    def _write_trust(self, path: Path, entries: list[dict]) -> Path:
        path.write_text(json.dumps(entries, indent=1))
        return path

    def trust_entry(self, key: str, name: str, roles: list[str], *, certificate: bool = False) -> dict:
        party = self.roles[key].party()
        entry = {**party.trust_entry(roles=roles), "name": name}
        if certificate:                       # the TBS verifies entries with their certificates
            entry["certificate"] = party.certificate.canonical_bytes().decode()
        return entry

    def start_dta(self, name: str) -> Role:
        idp = self.roles["idp"]
        home = self.workdir / name
        home.mkdir(parents=True, exist_ok=True)
        trust = self._write_trust(self.workdir / f"{name}-idp-trust.json",
                                  [self.trust_entry("idp", urlsplit(idp.url).hostname, ["idp"])])
        a = self._serve(name, home, milagro_argv("dta", "serve", "--home", home, "--name", name, "--chain", self.chain,
                                                 "--port", "0", "--workers", self.workers, "--idp", idp.url,
                                                 "--idp-trust", trust))
        role = Role(name, home, a["base_url"], a["listening"], a["ca_file"], locator=a["locator"], pid=a["pid"])
        self.roles[name] = role
        self.say(f"D-TA {name}: {role.url} (pid {role.pid}), relying on the IdP pinned at "
                 f"{Party.load(idp.home, 'idp').locator.txid_hex[:16]}…")
        return role

    def start_service(self) -> Role:
        home = self.workdir / "service"
        home.mkdir(parents=True, exist_ok=True)
        locator_file = home / "service-locator.json"
        run("service init", "service", "init", "--home", home, "--chain", self.chain, "--name", SERVICE_NAME,
            "--locator-file", locator_file)
        for name in DTA_NAMES:
            run(f"register the service at {name}", "dta", "service", "add", "--home", self.roles[name].home,
                "--locator-file", locator_file, "--name", SERVICE_NAME)
        trust = self._write_trust(home / "dta-trust.json", [self.trust_entry(n, n, ["dta"]) for n in DTA_NAMES])
        argv = milagro_argv("service", "serve", "--home", home, "--name", SERVICE_NAME, "--chain", self.chain,
                            "--port", "0", "--workers", self.workers, "--dta-trust", trust)
        for name in DTA_NAMES:
            argv += ["--dta", f"{name}={self.roles[name].url}"]
        a = self._serve("service", home, argv)
        role = Role(SERVICE_NAME, home, f"https://localhost:{a['listening']}", a["listening"], a["ca_file"],
                    pid=a["pid"])
        role.locator = role.party().locator.to_json()
        self.roles["service"] = role
        self.say(f"relying service: {role.url} (pid {role.pid}), registered at both D-TAs, "
                 f"server-secret shares from {', '.join(a.get('dtas', []))}")
        return role

    def start_tbs(self) -> Role:
        home = self.workdir / "tbs"
        a = self._serve("tbs", home, milagro_argv(
            "tbs", "serve", "--home", home, "--chain", self.chain, "--port", "0", "--workers", self.workers,
            "--gather", self.gather, "--batch-wait", self.batch_wait, "--max-batch", self.max_batch,
            "--min-confirmations", "1"))
        role = Role("tbs", home, a["base_url"], a["listening"], a["ca_file"], locator=a["locator"], pid=a["pid"])
        self.roles["tbs"] = role
        self.say(f"TBS: {role.url} (pid {role.pid}), batches of up to {self.max_batch} PATs, "
                 f"batch key {a['batch_key'][:16]}…")
        return role

    # --- capture -----------------------------------------------------------------------------
    def address(self, key: str) -> tuple[str, int]:
        """Where PATs reach a role: its recording proxy when capturing, else the role itself."""
        if self.capture:
            if key not in self.proxies:
                self.proxies[key] = RecordingProxy(("127.0.0.1", self.roles[key].port))
            return self.proxies[key].address
        return ("127.0.0.1", self.roles[key].port)

    def url(self, key: str) -> str:
        host, port = self.address(key)
        return f"https://{host}:{port}"

    def write_pcaps(self, directory: Path) -> dict[str, dict]:
        """One pcap per role the PATs talked to (server port relabelled 443 for Wireshark)."""
        directory.mkdir(parents=True, exist_ok=True)
        written = {}
        for key, proxy in self.proxies.items():
            path = directory / f"{key}.pcap"
            packets = proxy.write_pcap(path, server_port=443)
            written[key] = {"path": str(path), "connections": len(proxy.conversations), "packets": packets}
        return written

    def close_proxies(self) -> None:
        for proxy in self.proxies.values():
            proxy.close(timeout=1.0)

    # --- the TBS's device group ------------------------------------------------------------------
    def configure_group(self) -> dict:
        """The device group every new PAT joins: the D-TAs (their URLs as the PATs reach them)
        and trust entries for the D-TAs, the IdP and the relying service."""
        tbs = self.roles["tbs"]
        files = []
        for key, name, roles in [(n, n, ["dta"]) for n in DTA_NAMES] + [
                ("idp", urlsplit(self.roles["idp"].url).hostname, ["idp"]), ("service", SERVICE_NAME, ["service"])]:
            files += ["--trust", self._write_trust(tbs.home / f"trust-{key}.json",
                                                    [self.trust_entry(key, name, roles, certificate=True)])]
        dtas = [arg for name in DTA_NAMES for arg in ("--dta", self.url(name))]
        group = run("TBS device group", "tbs", "admin", "group", "add", "--home", tbs.home, "--name", GROUP, *dtas,
                    *files, "--chain", self.chain)
        run("TBS default group", "tbs", "admin", "group", "default", "--home", tbs.home, GROUP)
        self.say(f"TBS device group {GROUP!r}: D-TAs {', '.join(self.url(n) for n in DTA_NAMES)}; trust entries "
                 f"for {', '.join(DTA_NAMES)}, the IdP and the service (each verified on the chain)")
        return group or {}

    def close(self) -> None:
        self.close_proxies()
        if self.source is not None:
            self.source.close()
            self.source = None
        self.processes.stop_all()
