"""The combined server secret SS = Σ SS_i on disk: written by gunicorn's master after it fetched
the shares, read by each worker. SS is a secret (with a stolen client token it allows an offline
PIN search), so the file is 0600, replaced atomically, refused if others can read it, and its
value never appears in a repr or a log."""
from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path

from ...errors import IdentityError
from ...mpin import G2Point, decode_g2, encode_g2


def server_secret_path(home: str | os.PathLike) -> Path:
    return Path(home) / "mpin" / "server-secret.json"


def write_server_secret(path: Path, secret: G2Point, dtas: list[dict]) -> None:
    """``dtas``: the contributing D-TAs (name, url, locator), public, kept beside SS for /healthz."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)          # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"server_secret": encode_g2(secret).hex(), "dtas": dtas}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_server_secret(path: Path) -> tuple[G2Point, list[dict]]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise IdentityError(f"server secret file {path} is readable by others (mode {mode:o}); chmod 600 it")
    doc = json.loads(path.read_text())
    return decode_g2(doc["server_secret"]), list(doc.get("dtas", []))
