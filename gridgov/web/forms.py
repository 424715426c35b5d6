"""Robust HTML forms: a CSRF token on every state-changing request, and forms that keep input.

CSRF: one random token per browser session (``session["csrf_token"]``). Every POST, PUT,
PATCH or DELETE must carry it, as the form field ``csrf_token`` or the header
``X-CSRF-Token`` (what ``gg.api`` in static/js/app.js sends from ``<meta name="csrf-token">``).
Under /api/ the check applies only where the browser's cookie identifies the caller: a
request with an ``Authorization: Bearer`` token, or without a signed-in cookie session,
carries no ambient authority to forge.

Forms: a view builds ``Form.from_request()``, validates with its helpers (or catches a
domain error and calls ``form.add_error_from``), and on failure renders the same template
with the form again, so everything typed stays and every field shows its Chinese message.
Templates call ``form.field(...)`` or read ``form.value(name)`` / ``form.error(name)``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Blueprint, request, session
from markupsafe import Markup

from gridgov.errors import BadRequest, GridGovError

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_MESSAGE = "表单已过期，请刷新页面后重试"

bp = Blueprint("forms", __name__)


def csrf_token() -> str:
    """Return this browser session's CSRF token, creating it on first use."""
    token = session.get(CSRF_FIELD)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return str(token)


def csrf_field() -> Markup:
    """Return the hidden input every HTML form must include."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, csrf_token())


def _csrf_required() -> bool:
    if request.method not in UNSAFE_METHODS:
        return False
    if request.path.startswith("/api/"):
        if request.headers.get("Authorization", "").startswith("Bearer "):
            return False
        return session.get("user_id") is not None
    return True


def _submitted_token() -> str:
    header = request.headers.get(CSRF_HEADER, "")
    if header:
        return header
    # request.form parses the body; only url-encoded and multipart bodies have fields.
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.form.get(CSRF_FIELD, "")
    return ""


@bp.before_app_request
def check_csrf() -> None:
    """Refuse a state-changing request whose CSRF token is missing or wrong (400)."""
    if not _csrf_required():
        return
    expected = session.get(CSRF_FIELD)
    submitted = _submitted_token()
    if not expected or not submitted or not hmac.compare_digest(str(expected), submitted):
        raise BadRequest(CSRF_MESSAGE, code="csrf_failed")


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "csrf_field": csrf_field}


class Form:
    """What the user submitted and what is wrong with it, for re-rendering a form."""

    def __init__(
        self, data: Mapping[str, Any] | None = None, *, secret: Mapping[str, str] | None = None
    ) -> None:
        self.data: dict[str, Any] = dict(data or {})
        """What the user typed, echoed back when the form is rendered again."""
        self.secret: dict[str, str] = dict(secret or {})
        """Submitted values never echoed back (passwords)."""
        self.errors: dict[str, str] = {}
        """Field name → Chinese message; the key "" holds a message for the whole form."""

    @classmethod
    def from_request(cls, *, secret: Iterable[str] = ()) -> Form:
        """Return the submitted form; fields named in `secret` are not echoed back.

        Multi-valued fields (checkbox groups, multi-selects) keep their list of values.
        """
        hidden = set(secret)
        data: dict[str, Any] = {}
        for name in request.form:
            if name == CSRF_FIELD or name in hidden:
                continue
            values = request.form.getlist(name)
            data[name] = values if len(values) > 1 else values[0]
        return cls(data, secret={name: request.form.get(name, "") for name in hidden})

    # -- reading -------------------------------------------------------------------------

    def value(self, name: str, default: Any = "") -> Any:
        """Return what was submitted for `name` (secret fields come back empty)."""
        return self.data.get(name, default)

    def text(self, name: str) -> str:
        """Return the submitted text for `name`, stripped (secret fields: unstripped)."""
        if name in self.secret:
            return self.secret[name]
        raw = self.data.get(name, "")
        if isinstance(raw, list):
            raw = raw[0] if raw else ""
        return str(raw).strip()

    def values(self, name: str) -> list[str]:
        """Return every submitted value for `name` (checkbox groups)."""
        raw = self.data.get(name, [])
        return [str(v) for v in raw] if isinstance(raw, list) else [str(raw)] if raw else []

    def error(self, name: str) -> str:
        return self.errors.get(name, "")

    @property
    def ok(self) -> bool:
        return not self.errors

    # -- validating ----------------------------------------------------------------------

    def add_error(self, name: str, message: str) -> None:
        """Record a message for a field ("" for the whole form); the first one stays."""
        self.errors.setdefault(name, message)

    def add_error_from(self, exc: GridGovError) -> None:
        """Record a domain error: per field if it names fields, else for the whole form."""
        details = exc.details or {}
        named = details.get("fields")
        if isinstance(named, dict) and named:
            for name, message in named.items():
                self.add_error(str(name), str(message))
        elif isinstance(details.get("field"), str):
            self.add_error(details["field"], exc.message)
        else:
            self.add_error("", exc.message)

    def required(self, name: str, label: str, *, max_length: int = 500) -> str:
        """Return the field's text; record 请填写<label> or a too-long message."""
        text = self.text(name)
        if not text:
            self.add_error(name, f"请填写{label}")
        elif len(text) > max_length:
            self.add_error(name, f"{label}不能超过 {max_length} 个字")
        return text

    def optional(self, name: str, label: str, *, max_length: int = 500) -> str:
        """Return the field's text (maybe empty); record a too-long message."""
        text = self.text(name)
        if len(text) > max_length:
            self.add_error(name, f"{label}不能超过 {max_length} 个字")
        return text

    def integer(
        self,
        name: str,
        label: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        required: bool = True,
    ) -> int | None:
        """Return the field as an int; record why if it is empty, malformed or out of range."""
        text = self.text(name)
        if not text:
            if required:
                self.add_error(name, f"请填写{label}")
            return None
        try:
            number = int(text, 10)
        except ValueError:
            self.add_error(name, f"{label}应为整数")
            return None
        if minimum is not None and maximum is not None and not minimum <= number <= maximum:
            self.add_error(name, f"{label}应在 {minimum}–{maximum} 之间")
        elif minimum is not None and number < minimum:
            self.add_error(name, f"{label}不能小于 {minimum}")
        elif maximum is not None and number > maximum:
            self.add_error(name, f"{label}不能大于 {maximum}")
        return number

    def choice(
        self, name: str, label: str, choices: Iterable[str], *, required: bool = True
    ) -> str:
        """Return the field if it is one of `choices`; record 请选择<label> otherwise."""
        text = self.text(name)
        if not text:
            if required:
                self.add_error(name, f"请选择{label}")
            return ""
        if text not in set(choices):
            self.add_error(name, f"{label}的取值无效")
        return text

    # -- rendering -----------------------------------------------------------------------

    def field(
        self,
        name: str,
        label: str,
        *,
        type: str = "text",
        hint: str = "",
        **attrs: Any,
    ) -> Markup:
        """Render a labelled input that shows the submitted value and the field's error.

        Extra keyword arguments become attributes (`required=True`, `autocomplete="off"`,
        `inputmode="numeric"`); a trailing underscore is dropped (`class_="wide"`).
        Password inputs never echo a value back.
        """
        field_id = attrs.pop("id", f"f-{name}")
        error = self.error(name)
        value = "" if type == "password" else self.value(name, attrs.pop("value", ""))
        parts = [
            Markup(' type="{}" id="{}" name="{}"').format(type, field_id, name),
        ]
        if type != "password":
            parts.append(Markup(' value="{}"').format(value))
        if error:
            parts.append(
                Markup(' aria-invalid="true" aria-describedby="{}-error"').format(field_id)
            )
        for key, attr_value in attrs.items():
            key = key.rstrip("_").replace("_", "-")
            if attr_value is True:
                parts.append(Markup(" {}").format(key))
            elif attr_value not in (False, None):
                parts.append(Markup(' {}="{}"').format(key, attr_value))
        html = Markup('<div class="field{}"><label for="{}">{}</label><input{}>').format(
            " has-error" if error else "", field_id, label, Markup("").join(parts)
        )
        if hint:
            html += Markup('<small class="field-hint">{}</small>').format(hint)
        if error:
            html += Markup(
                '<small class="field-error" id="{}-error" role="alert">{}</small>'
            ).format(field_id, error)
        return html + Markup("</div>")

    def form_error(self) -> Markup:
        """Render the whole-form message (key ""), if any."""
        message = self.errors.get("")
        if not message:
            return Markup("")
        return Markup('<div class="alert alert-error" role="alert">{}</div>').format(message)
