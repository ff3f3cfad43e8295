"""Who may change what production is: bearer tokens for ``/feedback`` (and predictions when
``configs/serve.yaml`` asks), as a FastAPI dependency any router can use.

Tokens come from the YAML file named by ``RETRAIN_TOKENS_FILE`` (never from the committed
configs), several at once so a token can be rotated without a gap::

    tokens:
      - name: labeller-2026-11          # recorded with every label it writes
        sha256: 9f86d081884c7d65...     # the token's SHA-256 (hex), or `token: <the token>`
        scopes: [feedback]              # default [feedback, predict]
        max_labels_per_minute: 600      # optional; else configs/serve.yaml's

The file is re-read when it changes (mtime, size or inode), so adding the new token, moving
the clients, then removing the old one needs no restart.  The presented token's SHA-256 is
compared with each configured digest with :func:`secrets.compare_digest` (as vLLM does), so
the comparison takes the same time whatever the token; no token, and no part of one, is ever
logged or put in a response: errors about the file name the entry by its position and key.

**Fail closed.** Without a tokens file ``/feedback`` answers 403 saying how to enable it; a
tokens file that cannot be read or parsed refuses every token (503) until it is fixed.  The
development switch (``retrain serve --dev-open-feedback``) lets ``/feedback`` through without
a token, only from a loopback address and only on a server bound to loopback; those labels
are recorded with no token and never count for triggers, monitor or export.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retrain.serve.inputs import RequestError

TOKENS_ENV = "RETRAIN_TOKENS_FILE"
Scope = Literal["feedback", "predict"]
SCOPES: tuple[Scope, ...] = ("feedback", "predict")
MIN_TOKEN_CHARS = 16
REALM = 'Bearer realm="retrain"'
FORWARDED = ("forwarded", "x-forwarded-for", "x-real-ip")
HOW_TO_ENABLE = (
    f"set {TOKENS_ENV} to a tokens file (README, Serving: tokens); for development on this "
    "machine only, `retrain serve --dev-open-feedback`"
)


# --------------------------------------------------------------------------- the file
class TokensFileError(Exception):
    """The tokens file cannot be used; the message never quotes a value from it."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    token: str | None = Field(default=None, min_length=MIN_TOKEN_CHARS)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    scopes: tuple[Scope, ...] = SCOPES
    max_labels_per_request: int | None = Field(default=None, ge=1)
    max_labels_per_minute: int | None = Field(default=None, ge=1)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: list[_Entry] = []  # none: /feedback is closed (403), as without a file


@dataclass(frozen=True)
class Principal:
    """Who made a request: a token's name, or ``None`` for the development switch."""

    name: str | None
    scopes: frozenset[str] = frozenset(SCOPES)
    max_labels_per_request: int | None = None
    max_labels_per_minute: int | None = None

    @property
    def authenticated(self) -> bool:
        return self.name is not None


DEV = Principal(name=None, scopes=frozenset({"feedback"}))


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def parse_tokens(text: str, display: str) -> list[tuple[bytes, Principal]]:
    """``(sha256 digest, principal)`` of each token in a tokens file's text.

    Raises :class:`TokensFileError` naming the file, the entry and the key, never a value.
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise TokensFileError(f"{display}: not valid YAML{where}") from None
    try:
        parsed = _File.model_validate(doc if doc is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        why = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        # pydantic's message may quote the input (a token): keep only its kind of error.
        if first["loc"] and first["loc"][-1] == "token":
            why = f"must be a string of at least {MIN_TOKEN_CHARS} characters"
        raise TokensFileError(f"{display}: {loc}: {why}") from None
    out: list[tuple[bytes, Principal]] = []
    names: set[str] = set()
    for i, e in enumerate(parsed.tokens):
        if (e.token is None) == (e.sha256 is None):
            raise TokensFileError(f"{display}: tokens.{i}: give exactly one of token, sha256")
        if e.name in names:
            raise TokensFileError(f"{display}: tokens.{i}.name: {e.name!r} is used twice")
        names.add(e.name)
        d = bytes.fromhex(e.sha256) if e.sha256 is not None else digest(e.token or "")
        out.append(
            (
                d,
                Principal(
                    e.name,
                    frozenset(e.scopes),
                    e.max_labels_per_request,
                    e.max_labels_per_minute,
                ),
            )
        )
    return out


class TokenFile:
    """The tokens of one file, re-read whenever the file changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._tokens: list[tuple[bytes, Principal]] = []
        self._error: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> TokenFile:
        value = (environ if environ is not None else os.environ).get(TOKENS_ENV, "").strip()
        return cls(Path(value) if value else None)

    def current(self) -> tuple[list[tuple[bytes, Principal]], str | None]:
        """``(tokens, error)``: an error means no token is accepted (fail closed)."""
        if self.path is None:
            return [], None
        try:
            st = self.path.stat()
        except OSError as exc:
            return [], f"{TOKENS_ENV}={self.path}: {exc.strerror or type(exc).__name__}"
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if key != self._key:
                try:
                    text = self.path.read_text(encoding="utf-8")
                    self._tokens, self._error = (
                        parse_tokens(text, f"{TOKENS_ENV}={self.path}"),
                        None,
                    )
                except TokensFileError as exc:
                    self._tokens, self._error = [], str(exc)
                except (OSError, UnicodeDecodeError) as exc:
                    self._tokens = []
                    self._error = f"{TOKENS_ENV}={self.path}: cannot be read ({type(exc).__name__})"
                self._key = key
            return self._tokens, self._error

    def match(self, presented: str) -> Principal | None:
        """The principal whose token this is, or None; every digest is compared."""
        tokens, error = self.current()
        if error:
            return None
        given = digest(presented)
        found = None
        for d, principal in tokens:
            if secrets.compare_digest(d, given):
                found = principal
        return found


# --------------------------------------------------------------------------- requests
class AuthError(RequestError):
    """401/403/503 with the headers the answer must carry (``WWW-Authenticate``)."""


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
    # A reverse proxy on this machine makes every client look local: refuse proxied calls.
    return local and not any(h in request.headers for h in FORWARDED)


@dataclass
class Auth:
    tokens: TokenFile
    dev_open_feedback: bool = False
    predictions_need_token: bool = False

    def status(self) -> dict[str, Any]:
        tokens, error = self.tokens.current()
        return {
            "tokens_file": str(self.tokens.path) if self.tokens.path else None,
            "tokens": len(tokens),
            "error": error,
            "dev_open_feedback": self.dev_open_feedback,
            "predictions_need_token": self.predictions_need_token,
        }

    def _some_tokens(self, what: str) -> None:
        """Raise unless the tokens file is readable and names at least one token: 503 for a
        broken file (never the old set), 403 when none is configured (fail closed)."""
        tokens, error = self.tokens.current()
        if error:
            raise AuthError(503, "authorization", f"{error}; no token is accepted until fixed")
        if not tokens:
            raise AuthError(
                403,
                "authorization",
                f"{what} needs a bearer token and this server has none configured: "
                + HOW_TO_ENABLE,
            )

    def authorize(self, request: Request, scope: Scope) -> Principal | None:
        """The caller, or :class:`AuthError`; None when ``scope`` needs no token here."""
        if scope == "predict" and not self.predictions_need_token:
            return None
        what = "/feedback" if scope == "feedback" else "predictions"
        header = request.headers.get("authorization")
        if header is None:
            if scope == "feedback" and self.dev_open_feedback and _loopback(request):
                return DEV
            self._some_tokens(what)
            raise AuthError(
                401,
                "authorization",
                f"{what} needs a bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": REALM},
            )
        scheme, _, presented = header.strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise AuthError(
                401,
                "authorization",
                "expected 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_request"'},
            )
        self._some_tokens(what)
        principal = self.tokens.match(presented)
        if principal is None:
            raise AuthError(
                401,
                "authorization",
                f"the bearer token is not one of {TOKENS_ENV}'s (unknown, revoked or mistyped)",
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )
        if scope not in principal.scopes:
            raise AuthError(
                403,
                "authorization",
                f"token {principal.name!r} may not use {what} "
                f"(its scopes: {sorted(principal.scopes)})",
                headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope"'},
            )
        return principal


def requires(scope: Scope) -> Callable[[Request], Awaitable[Principal | None]]:
    """A FastAPI dependency: the caller of a route that needs ``scope`` (None: open)."""

    async def dependency(request: Request) -> Principal | None:
        auth: Auth = request.app.state.serve.auth
        return auth.authorize(request, scope)

    return dependency


# --------------------------------------------------------------------------- label budget
@dataclass
class LabelBudget:
    """Labels each token may post per minute (per replica), in a sliding 60 s window."""

    per_minute: int
    window: float = 60.0
    _spent: dict[str | None, deque[tuple[float, int]]] = field(default_factory=dict)

    def take(self, who: Principal, n: int, now: float | None = None) -> float | None:
        """Spend ``n`` labels for ``who``; None when allowed, else the seconds to wait."""
        limit = who.max_labels_per_minute or self.per_minute
        now = time.monotonic() if now is None else now
        spent = self._spent.setdefault(who.name, deque())
        while spent and spent[0][0] <= now - self.window:
            spent.popleft()
        used = sum(k for _, k in spent)
        if used + n > limit:
            if n > limit or not spent:
                return self.window
            # Wait until enough of the window has expired to make room for n.
            free, wait = limit - used, self.window
            for t, k in spent:
                free += k
                if free >= n:
                    wait = t + self.window - now
                    break
            return max(wait, 0.001)
        spent.append((now, n))
        return None


def check_dev_switch(host: str, dev_open_feedback: bool) -> None:
    """The development switch only on a server bound to loopback (ValueError otherwise)."""
    if not dev_open_feedback:
        return
    try:
        loop = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loop = host == "localhost"
    if not loop:
        raise ValueError(
            f"--dev-open-feedback only on a loopback address (--host 127.0.0.1), not {host!r}"
        )
