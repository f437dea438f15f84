"""Storage and tracking passwords never reach output, reports or stored attributes.

A URL is masked by parsing it: the password of its userinfo and the values of its secret
query parameters (``password=``, ``token=``...) each become one ``***``, whatever
characters they hold, percent-encoded or not. A URL that cannot be parsed loses
everything between its scheme and its host. Free text (a driver's error, a command line)
is masked URL by URL, and by the exact credential tokens (``user:password@``,
``password=value``) of every URL this process has seen, never by the bare password: a
short one would garble the text and its ``***`` pattern would give the password away.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
SECRET_PARAMETERS = frozenset(
    {"password", "passwd", "pwd", "pass", "secret", "token", "access_token", "api_key",
     "apikey", "access_key", "secret_key", "aws_secret_access_key", "sslpassword"}
)  # fmt: skip
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.I)
_HOST = re.compile(r"(?:[A-Za-z0-9._~%-]*|\[[0-9A-Fa-f:.]*\])(?::\d*)?")
# In free text: a userinfo with a password, up to the first "@" that a host follows (a
# port and a path are not a password).
_USERINFO = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s'\"]*:)(?!\d+(?:/|\s|$))(?P<password>[^\n]{0,300}?)"
    r"(?=@(?:[A-Za-z0-9._~%-]+|\[[0-9A-Fa-f:.]*\])(?::\d+)?(?:[/?#\s'\",;)]|$))",
    re.I,
)
_QUERY_SECRET = re.compile(r"(?P<head>[?&;](?P<key>[A-Za-z_]+)=)(?P<value>[^&#\s'\"]*)")
_QUERY_SECRET_IN_URL = re.compile(r"(?P<head>[?&](?P<key>[A-Za-z_%0-9]+)=)(?P<value>[^&]*)")
_SEEN: dict[str, str] = {}  # a credential token as it may show -> what shows instead


def remember_password(url: str) -> None:
    """Note the credential tokens of ``url``, so that they are masked wherever they show
    up later in free text (in each form: as written, percent-decoded)."""
    url = url.strip()
    match = _SCHEME.match(url)
    if not match:
        return
    rest = url[match.end() :]
    authority_end = len(rest) if rest.startswith("/") else rest.rfind("@")
    userinfo = rest[:authority_end] if authority_end > 0 and not rest.startswith("/") else ""
    if ":" in userinfo:
        user, _, password = userinfo.partition(":")
        for form in {password, unquote(password)}:
            for name in {user, unquote(user)}:
                if form:
                    _SEEN[f"{name}:{form}@"] = f"{name}:{MASK}@"
    for key, value in _query_secrets(rest):
        for form in {value, unquote(value.replace("+", " "))}:
            if form:
                _SEEN[f"{key}={form}"] = f"{key}={MASK}"


def _query_secrets(rest: str) -> list[tuple[str, str]]:
    query = rest.split("?", 1)[1] if "?" in rest else ""
    pairs = [part.partition("=") for part in query.split("&")]
    return [(key, value) for key, eq, value in pairs if eq and _secret(key)]


def _secret(key: str) -> bool:
    return unquote(key).lower() in SECRET_PARAMETERS


def mask_url(text: str) -> str:
    """``text`` with every password in it (of a URL, or one this process has seen in a
    URL) replaced by ``***``."""
    stripped = text.strip()
    if _SCHEME.match(stripped) and not any(c.isspace() for c in stripped):
        remember_password(stripped)
        return text.replace(stripped, _mask_one(stripped))
    for token in sorted(_SEEN, key=len, reverse=True):
        text = text.replace(token, _SEEN[token])
    text = _USERINFO.sub(lambda m: m.group("head") + MASK, text)
    return _QUERY_SECRET.sub(_mask_parameter, text)


def _mask_parameter(match: re.Match[str]) -> str:
    return match.group("head") + MASK if _secret(match.group("key")) else match.group(0)


def _mask_one(url: str) -> str:
    """One URL, its password and secret query values masked; its user, host, port,
    path and other parameters as written."""
    scheme = _SCHEME.match(url)
    assert scheme is not None
    head, rest = url[: scheme.end()], url[scheme.end() :]
    if rest.startswith("/"):  # sqlite:///path, journal:///path: no authority
        return head + _mask_query(rest)
    at = rest.rfind("@")
    userinfo, hostpart = (rest[:at], rest[at + 1 :]) if at >= 0 else ("", rest)
    cut = min((i for i in (hostpart.find(c) for c in "/?#") if i >= 0), default=len(hostpart))
    if not _HOST.fullmatch(hostpart[:cut]) or any(c.isspace() for c in hostpart[:cut]):
        # Unparsable: nothing between the scheme and the host is kept.
        return _mask_query(head + MASK + (f"@{hostpart}" if at >= 0 else hostpart[cut:]))
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + MASK
    return _mask_query(head + (f"{userinfo}@" if at >= 0 else "") + hostpart)


def _mask_query(rest: str) -> str:
    # In one URL, a secret's value runs to the next "&", whatever it holds.
    return _QUERY_SECRET_IN_URL.sub(_mask_parameter, rest)


__all__ = ["MASK", "SECRET_PARAMETERS", "mask_url", "remember_password"]
