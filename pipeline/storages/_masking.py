"""Storage passwords never reach output, reports or stored attributes.

A URL is masked by parsing it (SQLAlchemy's own URL rendering hides the password, whatever
characters it holds); free text, such as a driver's error message, is masked by the URL
pattern and by every password this process has seen in a storage URL.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]*:)(?P<password>[^@\s]*)(?=@)", re.I)
_SEEN: set[str] = set()


def remember_password(url: str) -> None:
    """Note the password of ``url`` so that it is masked wherever it shows up later."""
    password = _password_of(url)
    if password:
        _SEEN.add(password)


def _password_of(url: str) -> str | None:
    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        return None


def mask_url(text: str) -> str:
    """``text`` with every storage password in it replaced by ``***``."""
    password = _password_of(text.strip())
    if password:  # the text is one URL: let SQLAlchemy render it without the password
        remember_password(text.strip())
        text = make_url(text.strip()).render_as_string(hide_password=True)
    text = _PASSWORD.sub(lambda m: m.group("head") + "***", text)
    for secret in sorted(_SEEN, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


__all__ = ["mask_url", "remember_password"]
