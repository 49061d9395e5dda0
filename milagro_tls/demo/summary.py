"""The demo's summary: facts read back from the chain (batch transactions, their size per PAT,
confirmations), what each PAT did (suites, M-Pin), the pcap files, timings. Saved as
summary.json in the working directory and printed as rich tables."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..chain.hashes import from_display_hex
from ..chain.tx import parse_tx, tx_weight


def chain_facts(source, pats) -> list[dict]:
    """Per batch transaction the PATs are anchored in: its block height, confirmations at the
    tip, weight and virtual size from the transaction as mined, and the vB each PAT costs."""
    tip = source.tip().height
    per_txid = Counter(pat.locator["txid"] for pat in pats)
    facts = []
    for txid, count in sorted(per_txid.items()):
        status = source.tx_status(from_display_hex(txid))
        raw = source.transaction(from_display_hex(txid), status.block_hash)
        weight = tx_weight(raw, parse_tx(raw))
        vbytes = -(-weight // 4)
        facts.append({"txid": txid, "height": status.height,
                      "confirmations": tip - status.height + 1 if status.height is not None else 0,
                      "pats": count, "weight": weight, "vbytes": vbytes, "vbytes_per_pat": round(vbytes / count, 1)})
    return facts


@dataclass
class Summary:
    workdir: str
    pats: list[dict]
    batches: list[dict]
    pcaps: dict[str, dict]
    keylog: str | None
    timings: dict[str, float]
    roles: dict[str, dict]
    peak_memory_kib: dict[str, dict] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @property
    def authenticated(self) -> int:
        return sum(1 for pat in self.pats if pat["mpin_authenticated"])

    def render(self, console) -> None:
        from rich.table import Table

        batches = Table(title="Batch transactions (read back from the chain)")
        for column in ("txid", "height", "confirmations", "PATs", "weight (WU)", "vB", "vB per PAT"):
            batches.add_column(column, justify="left" if column == "txid" else "right")
        for b in self.batches:
            batches.add_row(b["txid"], str(b["height"]), str(b["confirmations"]), str(b["pats"]), str(b["weight"]),
                            str(b["vbytes"]), f"{b['vbytes_per_pat']:.1f}")
        console.print(batches)

        shown = self.pats if len(self.pats) <= 20 else self.pats[:10]
        pats = Table(title=f"PATs ({len(self.pats)}; M-Pin passed for {self.authenticated})")
        for column in ("PAT", "anchor (txid:input)", "enrol s", "login s", "M-Pin s", "D-TA suites", "service suite",
                       "M-Pin"):
            pats.add_column(column)
        for p in shown:
            locator = p["locator"] or {}
            pats.add_row(p["name"], f"{locator.get('txid', '?')[:16]}…:{locator.get('input', '?')}",
                         _s(p["enrol_seconds"]), _s(p["login_seconds"]), _s(p["mpin_seconds"]),
                         ", ".join(sorted(set(p["dta_suites"].values()))), p["service_suite"] or "",
                         "passed" if p["mpin_authenticated"] else "FAILED")
        console.print(pats)
        if len(shown) < len(self.pats):
            console.print(f"… and {len(self.pats) - len(shown)} more in {Path(self.workdir) / 'summary.json'}")

        if self.pcaps:
            captures = Table(title="Handshakes captured (server port shown as 443)")
            for column in ("role", "pcap", "connections", "packets"):
                captures.add_column(column)
            for role, c in self.pcaps.items():
                captures.add_row(role, c["path"], str(c["connections"]), str(c["packets"]))
            console.print(captures)
            if self.keylog:
                console.print(f"PATs' key log (decrypts their connections): {self.keylog}")
            service = self.pcaps.get("service")
            if service:
                console.print(f"  tshark -r {service['path']} -Y 'tls.handshake.type == 2' -T fields "
                              "-e tls.handshake.ciphersuite    # 0xff20: TLS_YAK_BTC_WITH_AES_128_GCM_SHA256")

        timings = Table(title="Timings (s)")
        timings.add_column("phase")
        timings.add_column("seconds", justify="right")
        for phase, seconds in self.timings.items():
            timings.add_row(phase, f"{seconds:.1f}")
        console.print(timings)
        console.print(f"summary: {Path(self.workdir) / 'summary.json'}; logs: {Path(self.workdir) / 'logs'}")


def _s(value) -> str:
    return "" if value is None else f"{value:.1f}"
