"""Flow helpers shared by the IdP's unit tests (Flask test client) and its HTTPS tests (httpx):
both kinds of client have .get/.post returning responses with status_code, headers and text."""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

REDIRECT_URI = "https://client.example/callback"
PASSWORD = "correct horse"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def text_of(response) -> str:
    return response.get_data(as_text=True) if hasattr(response, "get_data") else response.text


def location(response) -> str:
    return response.headers["Location"]


def query_of(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def login(client, username: str = "alice", password: str = PASSWORD, next_url: str = "/"):
    page = client.get("/login?" + urlencode({"next": next_url}))
    return client.post("/login?" + urlencode({"next": next_url}),
                       data={"username": username, "password": password, "csrf_token": csrf_of(text_of(page))})


def authorize_params(client_id: str, challenge: str, **extra) -> dict:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
              "scope": "openid profile", "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
              "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def authorize(client, params: dict, *, password: str = PASSWORD, approve: bool = True):
    """Drive /authorize through login and consent as a browser would; returns the final
    response (the redirect to the client, or whatever stopped the flow)."""
    url = "/authorize?" + urlencode(params)
    response = client.get(url)
    for _ in range(6):
        if response.status_code == 302 and urlsplit(location(response)).path == "/login":
            next_url = query_of(location(response))["next"]
            response = login(client, password=password, next_url=next_url)
            if response.status_code != 302:
                return response
            response = client.get(path_of(location(response)))
            continue
        if response.status_code == 200 and 'id="approve"' in text_of(response):
            response = client.post(url, data={"csrf_token": csrf_of(text_of(response)),
                                              "decision": "approve" if approve else "deny"})
            continue
        return response
    return response


def exchange(client, code: str, verifier: str, client_id: str, secret: str | None, **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier, **extra}
    auth = None
    if secret is not None:
        auth = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    else:
        data["client_id"] = client_id
    headers = {"Authorization": auth} if auth else {}
    return client.post("/token", data=data, headers=headers)
