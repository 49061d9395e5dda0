"""``milagro identity create|show|verify`` and ``milagro demo tls`` end to end on the embedded chain."""
from __future__ import annotations

import json
import stat

from milagro_tls.cli import main
from milagro_tls.identity.certificate import BirthCertificate


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_show_verify_round_trip(tmp_path, capsys):
    chain, home = tmp_path / "chain", tmp_path / "home"
    assert _run(capsys, "chain", "init", "--chain-dir", str(chain))[0] == 0
    code, out, _ = _run(capsys, "identity", "create", "--home", str(home), "--chain", f"regtest://{chain}",
                        "--role", "service", "--name", "echo.example")
    assert code == 0
    locator = json.loads(out)
    assert locator["kind"] == "p2wpkh" and locator["network"] == "regtest"
    for key_file in (home / "fee.key", home / "identities" / "echo.example" / "identity.key"):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    code, out, _ = _run(capsys, "identity", "show", "echo.example", "--home", str(home), "--trust-entry")
    entry = json.loads(out)
    assert entry == {"name": "echo.example", "locator": locator, "roles": ["service"]}

    code, cert_text, _ = _run(capsys, "identity", "show", "echo.example", "--home", str(home), "--certificate")
    cert_file = tmp_path / "cert.json"
    cert_file.write_text(cert_text)          # exactly what `show --certificate` printed
    code, out, err = _run(capsys, "identity", "verify", "--chain", f"regtest://{chain}",
                          "--locator", json.dumps(locator), "--cert", str(cert_file))
    assert code == 0, err
    assert out.startswith("valid: service 'echo.example'") and "6 confirmations" in out

    # Too deep a requirement: non-zero exit with a one-line reason.
    code, out, err = _run(capsys, "identity", "verify", "--chain", f"regtest://{chain}",
                          "--locator", json.dumps(locator), "--cert", str(cert_file), "--min-conf", "50")
    assert code != 0 and err.count("\n") == 1 and "AnchorTooShallow" in err

    # A certificate that is not the anchored one.
    forged = BirthCertificate.from_json({**json.loads(cert_text), "name": "your-bank.example"})
    cert_file.write_bytes(forged.canonical_bytes())
    code, out, err = _run(capsys, "identity", "verify", "--chain", f"regtest://{chain}",
                          "--locator", json.dumps(locator), "--cert", str(cert_file))
    assert code != 0 and "DigestMismatch" in err


def test_demo_runs_and_reports_agreement(tmp_path, capsys):
    code, out, _ = _run(capsys, "demo", "tls", "--dir", str(tmp_path / "demo"))
    assert code == 0
    assert "x(k_server·R_idp) == x(k_idp·R_server): yes" in out
    assert "refused: DigestMismatch" in out
