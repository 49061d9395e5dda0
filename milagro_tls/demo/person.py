"""The demo's user at the IdP's device page, over ordinary HTTPS (httpx, the IdP's fallback
certificate as the CA): logs in once, then approves each user code a device shows.

It relies only on the IdP's documented HTML contract (the same one interop/oidc/person.py, the
tests' walker, drives; that walker takes this module's page parser, since the demo must run from
an installed package):

- login form: inputs ``username``, ``password``, hidden ``csrf_token``, button ``id="login"``;
- device form: input ``user_code``, button ``id="confirm"``; consent: button ``id="approve"``
  named ``decision``; success: an element ``id="device-approved"``; errors: ``id="error"``.
"""
from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx

from .processes import DemoError

MAX_PAGES = 8


@dataclass
class Form:
    action: str
    method: str
    inputs: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)   # id -> (name, value)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms and "name" in a:
            if a.get("type", "text").lower() not in ("submit", "button", "image"):
                self.forms[-1].inputs[a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms:
            self.forms[-1].buttons[a.get("id", "")] = (a.get("name"), a.get("value"))


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


class DeviceApprover:
    """One person (a cookie jar: one login at the IdP), approving device codes one at a time
    (the pages' CSRF tokens belong to the one session)."""

    def __init__(self, username: str, password: str, ca_file: str, *, timeout: float = 30.0) -> None:
        self.username, self.password = username, password
        self.http = httpx.Client(verify=ssl.create_default_context(cafile=ca_file), follow_redirects=False,
                                 timeout=timeout)
        self._lock = threading.Lock()
        self.approved = 0

    def close(self) -> None:
        self.http.close()

    def _follow(self, response: httpx.Response) -> httpx.Response:
        for _ in range(10):
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            response = self.http.get(urljoin(str(response.url), response.headers["location"]))
        raise DemoError(f"the IdP's device pages redirect in a loop at {response.url}")

    def _submit(self, response: httpx.Response, form: Form, button: str, **values: str) -> httpx.Response:
        data = {**form.inputs, **values}
        name, value = form.buttons.get(button, (None, None))
        if name:
            data[name] = value or ""
        return self.http.post(urljoin(str(response.url), form.action), data=data)

    def approve(self, verification_uri_complete: str) -> None:
        """Open the device page with the code filled in and approve it: log in when asked,
        confirm the code, consent. DemoError with the page's text when it does not end on the
        success page."""
        with self._lock:
            try:
                self._approve(verification_uri_complete)
            except httpx.HTTPError as exc:
                raise DemoError(f"the IdP's device page {verification_uri_complete}: "
                                f"{type(exc).__name__}: {exc}") from None
            self.approved += 1

    def _approve(self, url: str) -> None:
        response = self._follow(self.http.get(url))
        for _ in range(MAX_PAGES):
            page = parse(response.text)
            if "device-approved" in page.ids:
                return
            if "error" in page.ids:
                raise DemoError(f"the IdP refused the device approval at {response.url}: "
                                f"HTTP {response.status_code} {response.text[:300]!r}")
            forms = {button: form for form in page.forms for button in form.buttons}
            if "login" in forms:
                response = self._submit(response, forms["login"], "login", username=self.username,
                                        password=self.password)
            elif "confirm" in forms:
                if not forms["confirm"].inputs.get("user_code"):
                    raise DemoError(f"the IdP's device page {response.url} shows no user code")
                response = self._submit(response, forms["confirm"], "confirm")
            elif "approve" in forms:
                response = self._submit(response, forms["approve"], "approve")
            else:
                raise DemoError(f"an unexpected IdP page at {response.url}: HTTP {response.status_code} "
                                f"{response.text[:300]!r}")
            response = self._follow(response)
        raise DemoError(f"no device-approved page after {MAX_PAGES} pages at {url}")
