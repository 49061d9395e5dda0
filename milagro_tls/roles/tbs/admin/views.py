"""The admin UI's HTML pages. Element ids and input names are what the browser test drives:
login form ``username``/``password``/``#login`` (a bad password: 401 with ``#error``),
``#message`` after an action, group form ``#create-group``, ``#push``, and the enrolments
table rows ``#enrolment-<id>`` with a ``.status`` cell the page's script keeps current."""
from __future__ import annotations

import functools
import json
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from . import accounts
from .auth import admin_config, csrf_ok, csrf_token, end_session, start_session
from .backend import STATES, BackendError, Conflict, NotFound, check_state
from .trust import TrustCheckError, fetch_from_role, public_entry, verify_pasted

views = Blueprint("admin", __name__)


def render(template: str, *, status: int = 200, **values):
    values.setdefault("error", None)
    return render_template(template, admin=g.get("admin"), csrf_token=csrf_token(), **values), status


def error_page(message: str, status: int):
    return render("error.html", status=status, error=message, title="Error")


def _safe_next(value: str | None) -> str:
    # Only a path on this server: never an open redirect.
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/groups"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/groups"


def login_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if g.get("admin") is None:
            if request.method in ("GET", "HEAD"):
                return redirect("/login?" + urlencode({"next": request.full_path.rstrip("?")}), code=302)
            return error_page("Please log in again.", 401)
        if request.method not in ("GET", "HEAD") and not csrf_ok():
            return error_page("The form expired or did not come from this site; please try again.", 400)
        return view(*args, **kwargs)
    return wrapper


# --- login -----------------------------------------------------------------------------------
@views.route("/login", methods=["GET", "POST"])
def login():
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render("login.html", title="Log in", next=next_url, username="")
    if not csrf_ok():
        return render("login.html", status=400, title="Log in", next=next_url, username="",
                      error="The form expired; please try again.")
    username = request.form.get("username", "")
    admin = accounts.authenticate(admin_config().store, username, request.form.get("password", ""))
    if admin is None:
        return render("login.html", status=401, title="Log in", next=next_url, username=username,
                      error="Wrong username or password.")
    start_session(admin)
    return redirect(next_url, code=302)


@views.post("/logout")
@login_required
def logout():
    end_session()
    return redirect("/login", code=302)


@views.get("/")
@login_required
def index():
    return redirect("/groups", code=302)


# --- groups ----------------------------------------------------------------------------------
def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@views.get("/groups")
@login_required
def groups():
    return render("groups.html", title="Device groups", groups=admin_config().backend.groups())


@views.post("/groups")
@login_required
def create_group():
    backend = admin_config().backend
    name = request.form.get("name", "").strip()
    try:
        backend.create_group(name, _lines(request.form.get("dta_urls", "")))
    except BackendError as error:
        return render("groups.html", status=409 if isinstance(error, Conflict) else 400,
                      title="Device groups", groups=backend.groups(), error=str(error))
    flash(f"Group {name} created.")
    return redirect(url_for("admin.group", name=name), code=303)


def _group_page(name: str, *, status: int = 200, error: str | None = None, checked=None):
    try:
        group = admin_config().backend.group(name)
    except NotFound:
        abort(404, description=f"No group {name!r}.")
    return render("group.html", status=status, title=f"Group {group.name}", group=group, error=error,
                  entries=[public_entry(e) for e in group.trust], checked=checked or [],
                  can_check=admin_config().chain is not None)


@views.get("/groups/<name>")
@login_required
def group(name: str):
    return _group_page(name)


def _group_action(name: str, action, done: str):
    try:
        result = action()
    except NotFound as error:
        abort(404, description=str(error))
    except (BackendError, TrustCheckError) as error:
        return _group_page(name, status=400, error=str(error))
    flash(done if result is None else done.format(result))
    return redirect(url_for("admin.group", name=name), code=303)


@views.post("/groups/<name>/dta-urls")
@login_required
def set_dta_urls(name: str):
    urls = _lines(request.form.get("dta_urls", ""))
    return _group_action(name, lambda: admin_config().backend.set_dta_urls(name, urls) and None,
                         "D-TA URLs saved.")


def _check_and_put(name: str, verified):
    backend = admin_config().backend
    backend.group(name)                          # 404 before any network or chain work
    added = verified()
    backend.put_trust(name, [v.entry for v in added])
    return ", ".join(f"{v.entry['name']} ({v.identity.certificate.role}, anchor {v.identity.locator.txid_hex[:16]}…"
                     f"{'; warnings: ' + '; '.join(v.warnings) if v.warnings else ''})" for v in added)


def _chain():
    chain = admin_config().chain
    if chain is None:
        raise TrustCheckError("this admin UI has no chain access to check trust entries")
    return chain


@views.post("/groups/<name>/trust/paste")
@login_required
def paste_trust(name: str):
    text = request.form.get("entries", "")
    return _group_action(name, lambda: _check_and_put(name, lambda: verify_pasted(text, _chain())),
                         "Verified and trusted: {}")


@views.post("/groups/<name>/trust/fetch")
@login_required
def fetch_trust(name: str):
    form = request.form
    roles = [r.strip() for r in form.get("roles", "").split(",") if r.strip()] or None

    def fetch():
        expected = None
        if form.get("expected_locator", "").strip():
            try:
                expected = json.loads(form["expected_locator"])
            except ValueError:
                raise TrustCheckError("the expected locator is not JSON") from None
        with admin_config().fetch_http() as http:
            return [fetch_from_role(form.get("url", ""), http, _chain(), name=form.get("entry_name", "").strip() or None,
                                    roles=roles, expected_locator=expected)]
    return _group_action(name, lambda: _check_and_put(name, fetch), "Verified and trusted: {}")


@views.post("/groups/<name>/trust/<entry>/remove")
@login_required
def remove_trust(name: str, entry: str):
    return _group_action(name, lambda: admin_config().backend.remove_trust(name, entry) and None,
                         f"No longer trusted: {entry}.")


@views.post("/groups/<name>/default")
@login_required
def set_default(name: str):
    return _group_action(name, lambda: admin_config().backend.set_default(name),
                         f"New enrolments join {name}.")


@views.post("/groups/<name>/push")
@login_required
def push(name: str):
    return _group_action(name, lambda: admin_config().backend.push(name),
                         "Pushed: {0.group} version {0.version} for {0.pats} device(s).")


# --- enrolments ------------------------------------------------------------------------------
@views.get("/enrolments")
@login_required
def enrolments():
    group_name = request.args.get("group") or None
    try:
        state = check_state(request.args.get("state"))
    except BackendError as error:
        abort(400, description=str(error))
    rows = admin_config().backend.enrolments(group=group_name, state=state)
    query = {k: v for k, v in (("group", group_name), ("state", state)) if v}
    return render("enrolments.html", title="Enrolments", enrolments=rows, states=STATES, group=group_name,
                  state=state, poll_url="/api/enrolments" + ("?" + urlencode(query) if query else ""),
                  poll_interval=admin_config().poll_interval_ms)


# --- API tokens ------------------------------------------------------------------------------
@views.get("/tokens")
@login_required
def tokens():
    return render("tokens.html", title="API tokens", tokens=accounts.list_tokens(admin_config().store, g.admin),
                  new_token=None)


@views.post("/tokens")
@login_required
def create_token():
    store = admin_config().store
    try:
        token = accounts.create_token(store, g.admin, request.form.get("label", ""))
    except accounts.AccountError as error:
        return render("tokens.html", status=400, title="API tokens", tokens=accounts.list_tokens(store, g.admin),
                      new_token=None, error=str(error))
    # Shown once, on this response only (no-store): the database keeps its SHA256.
    return render("tokens.html", title="API tokens", tokens=accounts.list_tokens(store, g.admin), new_token=token)


@views.post("/tokens/<prefix>/revoke")
@login_required
def revoke_token(prefix: str):
    if not accounts.revoke_token(admin_config().store, g.admin, prefix):
        abort(404, description="No such active token.")
    flash("Token revoked.")
    return redirect(url_for("admin.tokens"), code=303)
