"""A person at the IdP's pages, over plain HTTP (httpx): logs in, approves consent, enters a
device's user code. It relies only on the IdP's documented HTML contract:

- login form: inputs ``username``, ``password``, hidden ``csrf_token``, button ``id="login"``;
- consent form: hidden ``csrf_token``, buttons ``id="approve"``/``id="deny"`` named ``decision``;
- device form: input ``user_code``, button ``id="confirm"``; success page has ``id="device-approved"``;
- errors: an element ``id="error"``.

Redirects are followed by hand so that the one to the client's redirect URI is captured, never
fetched (nothing listens there).
"""
from __future__ import annotations

import ssl
from urllib.parse import urljoin

import httpx

# One parser of the IdP's pages for the tests and the demo (which runs from the installed package).
from milagro_tls.demo.person import Form, parse


class PersonError(AssertionError):
    """The pages did not go the way the contract says."""


class Person:
    """A user with a cookie jar, trusting ``ca_file`` for the IdP's HTTPS."""

    def __init__(self, username: str, password: str, ca_file: str, timeout: float = 30) -> None:
        self.username, self.password = username, password
        self.http = httpx.Client(verify=ssl.create_default_context(cafile=ca_file),
                                 follow_redirects=False, timeout=timeout)
        self.trail: list[tuple[str, str, int]] = []  # (method, url, status) of every request

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, url: str, **kwargs) -> httpx.Response:
        response = self.http.request(method, url, **kwargs)
        self.trail.append((method, url, response.status_code))
        return response

    def _follow(self, response: httpx.Response, stop_at: str | None) -> httpx.Response | str:
        """Follow redirects; return the redirect URL itself once it points under ``stop_at``."""
        for _ in range(10):
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = urljoin(str(response.url), response.headers["location"])
            if stop_at is not None and location.startswith(stop_at):
                return location
            response = self._request("GET", location)
        raise PersonError(f"redirect loop: {self.trail}")

    def _submit(self, response: httpx.Response, form: Form, button: str, **values: str) -> httpx.Response:
        data = dict(form.inputs)
        data.update(values)
        name, value = form.buttons.get(button, (None, None))
        if name:
            data[name] = value or ""
        url = urljoin(str(response.url), form.action)
        if form.method != "post":
            raise PersonError(f"form for {button!r} is not POST: {form}")
        return self._request("POST", url, data=data)

    def walk(self, url: str, *, stop_at: str | None = None, user_code: str | None = None,
             decision: str = "approve", password: str | None = None) -> httpx.Response | str:
        """Open ``url`` and act like the person on every page: log in, enter the user code,
        answer the consent. Returns the redirect URL under ``stop_at``, or the last page (a page
        with neither form: the device success page or an error page)."""
        response = self._follow(self._request("GET", url), stop_at)
        for _ in range(8):
            if isinstance(response, str):
                return response
            page = parse(response.text)
            if "error" in page.ids or "device-approved" in page.ids:
                return response
            forms = {b: f for f in page.forms for b in f.buttons}
            if "login" in forms:
                response = self._submit(response, forms["login"], "login", username=self.username,
                                        password=password if password is not None else self.password)
            elif "confirm" in forms:
                form = forms["confirm"]
                code = form.inputs.get("user_code") or user_code
                if not code:
                    raise PersonError("device page without a user code to enter")
                response = self._submit(response, form, "confirm", user_code=code)
            elif decision in forms:
                response = self._submit(response, forms[decision], decision)
            else:
                return response
            response = self._follow(response, stop_at)
        raise PersonError(f"too many pages: {self.trail}")

    def authorize(self, url: str, redirect_uri: str, **kwargs) -> str:
        """Walk an authorization request to the redirect back to the client; return its URL."""
        result = self.walk(url, stop_at=redirect_uri, **kwargs)
        if not isinstance(result, str):
            raise PersonError(f"no redirect to {redirect_uri}: HTTP {result.status_code} "
                              f"{result.text[:500]!r}; trail {self.trail}")
        return result

    def approve_device(self, url: str, user_code: str | None = None) -> httpx.Response:
        """Open the device page (``verification_uri`` or ``_complete``) and approve the code."""
        result = self.walk(url, user_code=user_code)
        if isinstance(result, str) or "device-approved" not in parse(result.text).ids:
            body = result if isinstance(result, str) else f"HTTP {result.status_code} {result.text[:500]!r}"
            raise PersonError(f"device not approved: {body}; trail {self.trail}")
        return result
