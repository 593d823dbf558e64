"""The one scrubber: what wanmock writes down (the journal, task dumps, the access log, contract
reports, JUnit files, drift reports, cassettes, error messages) never holds a credential.

Three things are removed:

* credential-like **names**: headers (``Authorization``, ``Proxy-Authorization``, ``X-Api-Key``,
  ``Api-Key``, ``X-DashScope-ApiKey``, ``Cookie``, ``Set-Cookie``, ...), query parameters
  (``api_key``, ``key``, ``token``, ``access_token``, ``signature``, ...) and body fields
  (``api_key``, ``apiKey``, ``token``, ``password``, ``secret``, ...), matched without regard to
  case, ``-`` or ``_``;
* every **known secret value** (the API keys in use, the admin token, a store password) wherever
  it occurs in a string, in each form it may travel in: plain, URL-encoded (``quote`` and
  ``quote_plus``) and base64 (standard and URL-safe, with or without padding, at any byte
  alignment, so ``Basic base64(user:key)`` is caught too);
* in full mode (:func:`scrub`, for files meant to be shared), signed-URL query parameters
  (``Signature``, ``Expires``, ``X-Amz-*``, ...), long query values and URL user info.

Key fingerprints (:class:`Fingerprint`) are salted HMAC-SHA-256 truncated to 64 bits: the same
key gives the same fingerprint within one store, and nothing outside it can test a guess.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import re
import secrets as _secrets
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

REDACTED = "<redacted>"
MIN_SECRET_LENGTH = 6  # shorter values (e.g. "test") would blank out ordinary words
FINGERPRINT_HEX = 16  # 64 bits
FINGERPRINT_CACHE = 1024  # fingerprints kept per store (cleared when full)
SEEN_LIMIT = 1024  # short strings a scrubber remembers the scrubbed form of


NAME_PUNCTUATION = re.compile(r"[-_.\s]")


def _normalise(name: str) -> str:
    return NAME_PUNCTUATION.sub("", unquote(name).lower()).removeprefix("amp;")


_INTERN_NAMES = 4096
_norm_cached = functools.lru_cache(maxsize=_INTERN_NAMES)(_normalise)  # names repeat: headers, body fields
SHORT_NAME = 64  # longer names are not cached (a cache of huge names would be a memory sink)


def _norm(name: str) -> str:
    return _norm_cached(name) if len(name) <= SHORT_NAME else _normalise(name)


SECRET_HEADERS = frozenset(
    _norm(h)
    for h in (
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "apikey",
        "x-dashscope-apikey",
        "x-goog-api-key",
        "x-auth-token",
        "x-access-token",
        "x-amz-security-token",
        "ocp-apim-subscription-key",
        "cookie",
        "set-cookie",
        "x-wanmock-admin-token",
    )
)
SECRET_PARAMS = frozenset(
    _norm(p)
    for p in (
        "api_key",
        "apikey",
        "key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "signature",
        "sig",
        "x-api-key",
        "security-token",
    )
)
SECRET_FIELDS = frozenset(
    _norm(f)
    for f in (
        "api_key",
        "apikey",
        "api-key",
        "x-api-key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "session_token",
        "security_token",
        "password",
        "passwd",
        "secret",
        "secret_key",
        "client_secret",
        "private_key",
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    )
)
# Signed-URL parameters (full mode): the provider's result links carry them.
SIGNED_PARAMS = frozenset({"signature", "expires", "ossaccesskeyid", "securitytoken", "accesskeyid", "sig", "token"})
SIGNED_PREFIXES = ("xamz", "xoss", "xgoog")
LONG_QUERY_VALUE = 40
URL = re.compile(r"https?://[^\s\"'<>\\]+", re.I)
SIGNED_ASSIGNMENT = re.compile(
    r"(?i)(?<![a-z_-])(signature|expires|ossaccesskeyid|security-token|accesskeyid|x-(?:amz|oss|goog)-[\w-]+)=([^&\s\"'<>\\]+)"
)
USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/@\s\"'<>]*)@")


def secret_header(name: str) -> bool:
    return _norm(name) in SECRET_HEADERS


def secret_param(name: str) -> bool:
    return _norm(name) in SECRET_PARAMS


def secret_field(name: str) -> bool:
    return _norm(str(name)) in SECRET_FIELDS


def signed_param(name: str) -> bool:
    lowered = _norm(name)
    return lowered in SIGNED_PARAMS or lowered.startswith(SIGNED_PREFIXES)


def _b64_cores(raw: bytes) -> set[str]:
    """The base64 text ``raw`` becomes wherever it sits in a longer encoded value: for each of
    the three byte alignments, the characters that depend on ``raw``'s bytes only."""
    out: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode("ascii")
        out |= {whole, whole.rstrip("=")}
        for shift in (0, 1, 2):
            text = encode(b"\0" * shift + raw).decode("ascii")
            start = -(-8 * shift // 6)
            end = 8 * (shift + len(raw)) // 6
            out.add(text[start:end])
    return out


@functools.lru_cache(maxsize=1024)  # a key's forms are computed once, not per request
def _forms(secret: str) -> frozenset[str]:
    if len(secret) < MIN_SECRET_LENGTH:
        return frozenset()
    found = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    found |= _b64_cores(secret.encode("utf-8"))
    return frozenset(f for f in found if len(f) >= MIN_SECRET_LENGTH)


def forms(secret: str) -> set[str]:
    """Every spelling of ``secret`` worth replacing (at least MIN_SECRET_LENGTH characters)."""
    return set(_forms(secret))


class Scrubber:
    """Removes known secret values (in all their forms) and credential-named entries."""

    def __init__(self, secrets: Iterable[str | None] = (), fingerprint: Fingerprint | None = None) -> None:
        spelled: set[str] = set()
        for secret in secrets:
            if secret:
                spelled |= _forms(secret)
        self.forms = tuple(sorted(spelled, key=len, reverse=True))
        self.fingerprint = fingerprint
        self.margin = len(self.forms[0]) if self.forms else 0  # wanmock.mockserver.limits.Cleaner
        self.shortest = len(self.forms[-1]) if self.forms else sys.maxsize
        self._seen: dict[str, str] = {}
        self.redacted = REDACTED

    @staticmethod
    def redacts(name: str) -> bool:
        """Whether a member named ``name`` has its value redacted (a credential-like name)."""
        return secret_field(name)

    @staticmethod
    @functools.lru_cache(maxsize=1024)
    def cached(secrets: tuple[str, ...], fingerprint: Fingerprint | None = None) -> Scrubber:
        """The scrubber of these secrets, built once (the same keys come back request after
        request; a scrubber holds no per-use state)."""
        return Scrubber(secrets, fingerprint)

    def text(self, text: str) -> str:
        if len(text) < self.shortest:  # no form fits (and no form at all: shortest is huge)
            return text
        short = len(text) <= SHORT_NAME
        if short:  # names and short values come back request after request: scrubbed once
            found = self._seen.get(text)
            if found is not None:
                return found
        clean = text
        for form in self.forms:
            if form in clean:
                clean = clean.replace(form, REDACTED)
        if short and len(self._seen) < SEEN_LIMIT:
            self._seen[text] = clean
        return clean

    def value(self, obj: Any) -> Any:
        """A copy of a JSON-like value: secret-named fields redacted, secret values replaced."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {
                self.text(str(k)): (REDACTED if secret_field(str(k)) and v is not None else self.value(v))
                for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [self.value(item) for item in obj]
        return obj

    def header(self, name: str, value: str) -> str:
        if secret_header(name):
            if self.fingerprint is None:
                return REDACTED
            stripped = value.strip()
            token = stripped.partition(" ")[2].strip() or stripped
            return f"<redacted sha256:{self.fingerprint(token)}>"
        return self.text(value)

    def headers(self, items: Iterable[tuple[str, str]]) -> dict[str, str]:
        return {name: self.header(name, value) for name, value in items}

    def query(self, query: str) -> str:
        """A raw query string with secret-named parameters and secret values redacted (the
        rest kept byte for byte)."""
        if not query:
            return query
        pieces = []
        for piece in query.split("&"):
            name, equals, _ = piece.partition("=")
            pieces.append(f"{name}={REDACTED}" if equals and secret_param(name) else self.text(piece))
        return "&".join(pieces)

    def path_and_query(self, target: str) -> str:
        path, question, query = target.partition("?")
        return self.text(path) + question + self.query(query) if question else self.text(path)


_SECRET_HEADER_NAMES: dict[str, bool] = {}  # secret_header() of the names seen (they repeat)
SHORT_VALUE = 1024  # a credential header's secrets are kept per value up to this length


def _header_secrets(value: str) -> tuple[str, ...]:
    """The secrets in a credential header's value: the whole value, the token after a scheme
    word, and a Basic token's user and password."""
    found = [value.strip()]
    scheme, _, token = value.strip().partition(" ")
    if token:
        found.append(token.strip())
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(token.strip() + "==").decode().partition(":")
                found += [user, password]
            except (ValueError, UnicodeDecodeError):
                pass
    return tuple(found)


_header_secrets_cached = functools.lru_cache(maxsize=1024)(_header_secrets)  # a client's key comes back


def request_secrets(headers: Iterable[tuple[str, str]], query: str = "") -> list[str]:
    """The credential values a request presents: in credential headers (the token after a
    scheme word as well as the whole value) and in credential query parameters."""
    found: list[str] = []
    known = _SECRET_HEADER_NAMES
    for name, value in headers:
        secret = known.get(name)
        if secret is None:
            secret = secret_header(name)
            if len(known) < _INTERN_NAMES and len(name) <= SHORT_NAME:
                known[name] = secret
        if secret and value:
            found += _header_secrets_cached(value) if len(value) <= SHORT_VALUE else _header_secrets(value)
    for piece in query.split("&") if query else ():
        name, equals, value = piece.partition("=")
        if equals and secret_param(name) and value:
            found += [unquote_plus(value), unquote(value)]
    return found


class Fingerprint:
    """Salted key fingerprints: HMAC-SHA-256 under a per-store salt, 64 bits shown."""

    def __init__(self, salt: bytes | None = None) -> None:
        self.salt = salt if salt is not None else _secrets.token_bytes(32)
        self._seen: dict[str, str] = {}  # the keys in use come back on every request

    @classmethod
    def from_secret(cls, secret: bytes) -> Fingerprint:
        return cls(hmac.new(secret, b"wanmock key fingerprint", hashlib.sha256).digest())

    def __call__(self, token: str) -> str:
        found = self._seen.get(token)
        if found is None:
            digest = hmac.new(self.salt, token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
            if len(self._seen) >= FINGERPRINT_CACHE:
                self._seen.clear()
            found = self._seen[token] = digest[:FINGERPRINT_HEX]
        return found


# -- full mode: files meant to be shared (cassettes, reports) --------------------------------


def scrub_url(url: str) -> str:
    """``url`` with user info, signed and credential query parameters and long query values
    redacted (textually: the rest of the URL is kept byte for byte)."""
    base, question, rest = url.partition("?")
    scheme, sep, after = base.partition("://")
    authority, slash, path = after.partition("/")
    if "@" in authority:
        authority = REDACTED + "@" + authority.rpartition("@")[2]
    base = scheme + sep + authority + slash + path
    if not question:
        return base
    query, hash_mark, fragment = rest.partition("#")
    pieces = []
    for piece in query.split("&"):
        name, equals, value = piece.partition("=")
        if equals and (signed_param(name) or secret_param(name) or len(unquote(value)) > LONG_QUERY_VALUE):
            piece = f"{name}={REDACTED}"
        pieces.append(piece)
    return base + "?" + "&".join(pieces) + hash_mark + fragment


def _full_text(text: str, scrubber: Scrubber) -> str:
    text = scrubber.text(text)
    if "://" in text:
        text = URL.sub(lambda found: scrub_url(found.group(0)), text)
    return SIGNED_ASSIGNMENT.sub(lambda found: f"{found.group(1)}={REDACTED}", text) if "=" in text else text


def _full(obj: Any, scrubber: Scrubber) -> Any:
    if isinstance(obj, str):
        return _full_text(obj, scrubber)
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for name, value in obj.items():
            clean = _full_text(str(name), scrubber)
            secret = secret_header(str(name)) or secret_field(str(name)) or signed_param(str(name))
            out[clean] = REDACTED if secret and value is not None else _full(value, scrubber)
        return out
    if isinstance(obj, list | tuple):
        return [_full(item, scrubber) for item in obj]
    return obj


def scrub(obj: Any, keys: Iterable[str | None] = ()) -> Any:
    """A copy of ``obj`` (headers, a query, a JSON body, a string) safe to write to a shared
    file: credential fields redacted, each of ``keys`` replaced by ``<redacted>`` in every
    form, and every URL's signature and user info redacted."""
    return _full(obj, Scrubber(keys))


def scrub_text(text: str, keys: Iterable[str | None] = ()) -> str:
    return _full_text(text, Scrubber(keys))


# -- store URLs and logs ---------------------------------------------------------------------


def mask_userinfo(text: str) -> str:
    """``redis://user:secret@host`` -> ``redis://***@host`` wherever a URL appears in ``text``."""
    return USERINFO.sub(lambda m: f"{m.group(1)}***@", text)


def url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` as its user info's password (when it names none)."""
    parts = urlsplit(url)
    if parts.password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


class AccessLogFilter(logging.Filter):
    """Scrubs the request target uvicorn's access log prints (``?api_key=...`` and any known
    secret value), so ``--log-level info`` writes no credential."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.scrubber = Scrubber(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], self.scrubber.path_and_query(args[2]), *args[3:])
        elif isinstance(record.msg, str):
            record.msg = self.scrubber.text(record.msg)
        return True


def install_access_log_filter(secrets: Iterable[str | None] = ()) -> None:
    logger = logging.getLogger("uvicorn.access")
    for existing in list(logger.filters):
        if isinstance(existing, AccessLogFilter):
            logger.removeFilter(existing)
    logger.addFilter(AccessLogFilter(secrets))
