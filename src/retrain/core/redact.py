"""Secrets out of text: URLs shown without their passwords, and known secrets scrubbed.

A database or tracking URL may carry a password (``postgresql://app:s3cret@db/log``,
``https://user:token@mlflow.example``) or a secret in its query (``?password=``,
``?token=``).  Whatever the tool shows or writes, in ``/health``, a log line, an error
message, ``training.json`` or a PR body, goes through :func:`url` first; free text that may
quote such a URL (a driver's error) goes through :func:`scrub` with the secrets known.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters whose value is a secret (matched case-insensitively, as a substring).
SECRET_KEYS = ("password", "passwd", "pwd", "secret", "token", "key", "sig", "credential")


def _secret_key(name: str) -> bool:
    low = name.lower()
    return any(k in low for k in SECRET_KEYS)


def url(text: str) -> str:
    """``text`` (a URL) with the password of its user info and secret query values masked.

    The user name and the host stay, so a reader still knows where it points.  Text that is
    not a URL with a scheme is returned as it is.
    """
    try:
        parts = urlsplit(text)
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return text
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if has_password else f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_key(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _secret_key(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(text: str) -> list[str]:
    """The secret parts of a URL (password, secret query values), raw and percent-decoded,
    for :func:`scrub`."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return [text]
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        _, has_password, password = userinfo.partition(":")
        if has_password and password:
            found += [password, unquote(password)]
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if _secret_key(k) and v:
            found.append(v)
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


_URL_IN_TEXT = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def urls_in(text: str) -> str:
    """``text`` with every URL in it passed through :func:`url` (for messages that quote
    a URL this process did not configure, e.g. an exception's text)."""
    return _URL_IN_TEXT.sub(lambda m: url(m.group(0)), text)
