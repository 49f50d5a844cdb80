"""Security headers for every response. HSTS is nginx's: only it knows the scheme.

This module is the policy; ``fwa_api.middleware.request_context`` appends its headers in the one
send wrapper the stack has. Each header is added only when the route did not set it, so a page
that needs a stricter or nonce-carrying policy can send its own.

* ``X-XSS-Protection: 0``: the legacy XSS auditor is gone from current browsers and, where it
  survives, can be abused to blank or leak parts of a page; OWASP recommends disabling it and
  relying on the CSP instead.
* ``Content-Security-Policy``: HTML pages (the chat page) may load scripts, styles and data only
  from this origin, with no inline script or style; anything else (JSON, metrics) gets a policy
  that allows nothing.
* ``Cache-Control: no-store`` on ``/api`` responses: they can carry PHI, which must not sit in
  browser or proxy caches.
"""

from __future__ import annotations

from collections.abc import Iterable

Header = tuple[bytes, bytes]

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"

_ALWAYS: tuple[Header, ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"x-xss-protection", b"0"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
_PAGE_CSP = (b"content-security-policy", PAGE_CSP.encode())
_API_CSP = (b"content-security-policy", API_CSP.encode())
_NO_STORE = (b"cache-control", b"no-store")
_OURS = frozenset(name for name, _ in (*_ALWAYS, _PAGE_CSP, _NO_STORE))


def _defaults(html: bool, is_api: bool) -> tuple[Header, ...]:
    return (*_ALWAYS, _PAGE_CSP if html else _API_CSP, *((_NO_STORE,) if is_api else ()))


# What a response that sets none of these headers itself gets (nearly all): by (html, is_api).
_DEFAULTS = {
    (html, is_api): _defaults(html, is_api) for html in (False, True) for is_api in (False, True)
}


def security_headers(headers: Iterable[Header], is_api: bool) -> tuple[Header, ...]:
    """The headers to append to a response that has ``headers`` (ASGI: lower-case names)."""
    present = dict(headers)  # a handful of headers: a dict is the quickest lookup
    html = present.get(b"content-type", b"").startswith(b"text/html")
    added = _DEFAULTS[html, is_api]
    if _OURS.isdisjoint(present):
        return added
    return tuple(header for header in added if header[0] not in present)
