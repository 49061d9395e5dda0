"""``milagro chain serve``: a RegtestNode behind bitcoind's JSON-RPC and Esplora's REST, on loopback.

One HTTP port carries both: ``POST /`` is JSON-RPC (HTTP basic auth with the cookie
in DATADIR/.cookie, as bitcoind does), everything else is the Esplora REST subset
(no auth: Esplora is public, and the port only listens on loopback).

While it runs the server owns the node, and with it the chain directory's lock;
DATADIR/server.json (host, port, pid, URLs) tells other processes where to go
instead (``spec.open_source``). Both files are removed on a clean exit.
"""
from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .esplora_rest import JSON, TEXT, EsploraRest, HttpError
from .rpc_methods import RpcMethods
from .rpc_protocol import RPC_INVALID_REQUEST, RPC_METHOD_NOT_FOUND, RPC_MISC_ERROR, RPC_PARSE_ERROR, RpcError

COOKIE_USER = "__cookie__"
SERVER_FILE = "server.json"
COOKIE_FILE = ".cookie"
MAX_BODY = 32 * 1024 * 1024          # a few maximal blocks' worth of hex; more is abuse
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _write_private(path: Path, data: str) -> None:
    """Write a file readable by its owner only, atomically (readers never see half a cookie)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class ChainServer:
    """Serve ``node`` on ``host:port`` (port 0: any free port). ``start()`` runs it in a thread."""

    def __init__(self, node, datadir: str | Path, host: str = "127.0.0.1", port: int = 0,
                 *, owns_node: bool = False, log=None) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"the chain server listens on loopback only, not {host!r}")
        self.node = node
        self.datadir = Path(datadir)
        self.owns_node = owns_node
        self.methods = RpcMethods(node, self.datadir)
        self.rest = EsploraRest(self.methods.view)
        self.cookie = f"{COOKIE_USER}:{secrets.token_hex(32)}"
        self.log = log                      # callable(str) or None for silence
        self.closing = False
        self._busy = 0
        self._idle = threading.Condition()
        self._conns: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        server_cls = _HttpServer
        if ":" in host:
            server_cls = type("_HttpServer6", (_HttpServer,), {"address_family": socket.AF_INET6})
        self.httpd = server_cls((host, port), _Handler)
        self.httpd.app = self
        self.host, self.port = host, self.httpd.server_address[1]

    @classmethod
    def open(cls, datadir: str | Path, host: str = "127.0.0.1", port: int = 0, **kw) -> "ChainServer":
        """Open the node in ``datadir`` (DataDirLocked if another process has it) and serve it."""
        from .node import RegtestNode
        node = RegtestNode.open(datadir)
        try:
            return cls(node, datadir, host, port, owns_node=True, **kw)
        except BaseException:
            node.close()
            raise

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def info(self) -> dict:
        return {"host": self.host, "port": self.port, "pid": os.getpid(), "rpc_url": self.url + "/",
                "rest_url": self.url, "cookie_file": str(self.datadir / COOKIE_FILE)}

    def start(self) -> "ChainServer":
        """Write the cookie and server.json, then serve in a background thread."""
        _write_private(self.datadir / COOKIE_FILE, self.cookie)
        _write_private(self.datadir / SERVER_FILE, json.dumps(self.info()))
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="chain-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, let running requests finish, drop idle connections, remove our files."""
        if self.closing:
            return
        self.closing = True
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=30)
            for conn in list(self._conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._remove_files()
        if self.owns_node:
            self.node.close()

    def _remove_files(self) -> None:
        for name, ours in ((SERVER_FILE, lambda t: json.loads(t).get("pid") == os.getpid()),
                           (COOKIE_FILE, lambda t: t == self.cookie)):
            path = self.datadir / name
            try:
                if ours(path.read_text()):       # never delete a successor's files
                    path.unlink()
            except (OSError, ValueError):
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- request handling (called from the handler threads) ---

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(given.encode(), self.cookie.encode())

    def rpc_one(self, request) -> tuple[dict, int]:
        """One JSON-RPC 1.0 call to (reply, HTTP status) the way Core's JSONRPCExecOne does."""
        if not isinstance(request, dict):
            return _reply(None, RpcError(RPC_INVALID_REQUEST, "Invalid Request object"), None), 400
        req_id = request.get("id")
        try:
            if "method" not in request:
                raise RpcError(RPC_INVALID_REQUEST, "Missing method")
            result = self.methods.dispatch(request["method"], request.get("params"))
            return _reply(result, None, req_id), 200
        except RpcError as exc:
            status = {RPC_INVALID_REQUEST: 400, RPC_METHOD_NOT_FOUND: 404}.get(exc.code, 500)
            return _reply(None, exc, req_id), status
        except Exception as exc:      # a bug or a node failure: tell the client little, log the rest
            self._log_exception()
            return _reply(None, RpcError(RPC_MISC_ERROR, f"internal error: {type(exc).__name__}: {exc}"),
                          req_id), 500

    def rpc(self, body: bytes) -> tuple[int, bytes]:
        try:
            request = json.loads(body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return 500, _dumps(_reply(None, RpcError(RPC_PARSE_ERROR, "Parse error"), None))
        if isinstance(request, list):          # batch: always HTTP 200, one reply per call
            if not request:
                return 400, _dumps(_reply(None, RpcError(RPC_INVALID_REQUEST, "Invalid Request object"), None))
            return 200, _dumps([self.rpc_one(r)[0] for r in request])
        if not isinstance(request, dict):
            return 400, _dumps(_reply(None, RpcError(RPC_PARSE_ERROR, "Top-level object parse error"), None))
        reply, status = self.rpc_one(request)
        return status, _dumps(reply)

    def _log_exception(self) -> None:
        if self.log:
            self.log(traceback.format_exc())


def _reply(result, error: RpcError | None, req_id) -> dict:
    return {"result": result, "error": None if error is None else {"code": error.code, "message": error.message},
            "id": req_id}


def _dumps(obj) -> bytes:
    return (json.dumps(obj, default=_json_default) + "\n").encode()


def _json_default(value):
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"          # keep-alive, as bitcoind's libevent server
    server_version = "milagro-chain-server"
    timeout = 60                            # an idle keep-alive connection gives up its thread
    # Headers and body leave in one write (flushed per request by handle_one_request): separate
    # small writes meet Nagle and delayed ACKs and cost ~40 ms per keep-alive request.
    wbufsize = 64 * 1024
    # What the base class answers itself (a malformed request line, an unknown method): plain
    # text like every other error here, not an HTML page.
    error_content_type = TEXT
    error_message_format = "%(code)d %(message)s\n"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.app._idle:
            self.server.app._conns.add(self.connection)

    def finish(self) -> None:
        with self.server.app._idle:
            self.server.app._conns.discard(self.connection)
        super().finish()

    def log_message(self, fmt, *args) -> None:
        if self.server.app.log:
            self.server.app.log(f"{self.address_string()} {fmt % args}")

    def _send(self, status: int, ctype: str, body: bytes, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._send(411, TEXT, b"Content-Length required")
            self.close_connection = True
            return None
        if int(length) > MAX_BODY:
            self._send(413, TEXT, b"request too large")
            self.close_connection = True
            return None
        return self.rfile.read(int(length))

    def _guarded(self, work) -> None:
        app = self.server.app
        with app._idle:
            if app.closing:
                self._send(503, TEXT, b"server shutting down", {"Connection": "close"})
                self.close_connection = True
                return
            app._busy += 1
        try:
            work()
        except Exception:
            app._log_exception()
            try:
                self._send(500, TEXT, b"internal error")
            except OSError:
                pass
            self.close_connection = True
        finally:
            with app._idle:
                app._busy -= 1
                app._idle.notify_all()

    def do_POST(self) -> None:
        self._guarded(self._post)

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_HEAD(self) -> None:             # GET's status and headers; _send leaves out the body
        self._guarded(self._get)

    def _post(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/" or path.startswith("/wallet/"):
            if not self.server.app.authorized(self.headers.get("Authorization")):
                time.sleep(0.25)           # as bitcoind: make guessing the cookie slow
                # The body stays unread, so this connection cannot carry another request.
                self._send(401, TEXT, b"", {"WWW-Authenticate": 'Basic realm="jsonrpc"', "Connection": "close"})
                self.close_connection = True
                return
            body = self._body()
            if body is not None:
                status, reply = self.server.app.rpc(body)
                self._send(status, JSON, reply)
            return
        body = self._body()
        if body is not None:
            self._rest(lambda: self.server.app.rest.post(path, body))

    def _get(self) -> None:
        if self.path.split("?", 1)[0] == "/":
            self._send(405, TEXT, b"JSONRPC server handles only POST requests")
            return
        self._rest(lambda: self.server.app.rest.get(self.path))

    def _rest(self, call) -> None:
        try:
            status, ctype, body = call()
        except HttpError as exc:
            status, ctype, body = exc.status, TEXT, exc.text.encode()
        self._send(status, ctype, body)


def serve_until_signalled(datadir: str | Path, host: str = "127.0.0.1", port: int = 0, ready=None,
                          log=None) -> None:
    """Open, serve, call ``ready(info)``, block until SIGINT/SIGTERM, then shut down cleanly."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ChainServer.open(datadir, host, port, log=log) as server:
            server.start()
            if ready:
                ready(server.info())
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stderr_log(line: str) -> None:
    """A ``log`` for ChainServer: access lines and tracebacks to stderr."""
    print(line, file=sys.stderr, flush=True)
