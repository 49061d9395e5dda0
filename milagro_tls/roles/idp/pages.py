"""The IdP's HTML pages (Jinja, autoescaped). The element ids and input names are a contract
with the browser and client tests (docs: the IdP's HTML contract): keep them."""
from __future__ import annotations

from flask import render_template_string
from markupsafe import Markup

_LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} - milagro IdP</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>{{ title }}</h1>
{% if error %}<p id="error" role="alert">{{ error }}</p>{% endif %}
{{ body }}
</main></body></html>"""

_LOGIN = """<form method="post">
<input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<input type="hidden" name="next" value="{{ next }}">
<p><label>Username <input name="username" autocomplete="username" value="{{ username }}" required autofocus></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button id="login" type="submit">Log in</button></p>
</form>"""

_CONSENT = """<p><strong id="client-name">{{ client_name }}</strong> asks to sign you in as
<strong>{{ username }}</strong> with these scopes:</p>
<ul id="scopes">{% for scope in scopes %}<li>{{ scope }}</li>{% endfor %}</ul>
<form method="post"{% if action %} action="{{ action }}"{% endif %}>
<input type="hidden" name="csrf_token" value="{{ csrf_token }}">
{% for name, value in hidden %}<input type="hidden" name="{{ name }}" value="{{ value }}">{% endfor %}
<button id="approve" name="decision" value="approve" type="submit">Approve</button>
<button id="deny" name="decision" value="deny" type="submit">Deny</button>
</form>"""

_DEVICE = """<form method="post" action="{{ action }}">
<input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<p><label>Code shown on your device <input name="user_code" value="{{ user_code }}" autocomplete="off" required autofocus></label></p>
<p><button id="confirm" type="submit">Continue</button></p>
</form>"""

_MESSAGE = """<p id="{{ element_id }}">{{ message }}</p>"""


def page(title: str, body_template: str, *, status: int = 200, error: str | None = None, **values):
    body = Markup(render_template_string(body_template, **values))     # already escaped
    html = render_template_string(_LAYOUT, title=title, body=body, error=error)
    return html, status, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                          "X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


def login_page(*, csrf_token: str, next_url: str, username: str = "", error: str | None = None, status: int = 200):
    return page("Log in", _LOGIN, status=status, error=error, csrf_token=csrf_token, next=next_url,
                username=username)


def consent_page(*, csrf_token: str, client_name: str, username: str, scopes: list[str],
                 hidden: list[tuple[str, str]] = (), action: str | None = None):
    return page("Authorize", _CONSENT, csrf_token=csrf_token, client_name=client_name, username=username,
                scopes=scopes, hidden=list(hidden), action=action)


def device_page(*, csrf_token: str, action: str, user_code: str = "", error: str | None = None, status: int = 200):
    return page("Connect a device", _DEVICE, status=status, error=error, csrf_token=csrf_token, action=action,
                user_code=user_code)


def message_page(title: str, message: str, *, element_id: str, status: int = 200):
    return page(title, _MESSAGE, status=status, element_id=element_id, message=message)


def error_page(message: str, *, status: int = 400):
    return page("Error", "", status=status, error=message)
