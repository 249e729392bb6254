"""The host's live status page (``GET /ui``): one static HTML file, shipped in the wheel.

The page has no build step and loads nothing from elsewhere: its script and style are inline, and
it polls ``v1/status`` relative to where it is mounted (``/ui`` reads ``/v1/status``,
``/agents/ui`` reads ``/agents/v1/status``) every second. A host that requires a token is read with
``…/ui#token=<token>``: the fragment never leaves the browser, the page sends it as a Bearer
header. Serve :func:`page` with :func:`page_headers`, whose Content-Security-Policy allows exactly
the page's own inline script and style (by hash) and requests to its own origin.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib.resources import files
from typing import Final

PAGE_CONTENT_TYPE: Final = "text/html; charset=utf-8"
_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.DOTALL)


@functools.cache
def page() -> bytes:
    """The page, as the response body."""
    return files(__name__).joinpath("index.html").read_bytes()


@functools.cache
def page_headers() -> tuple[tuple[bytes, bytes], ...]:
    """Response headers for :func:`page` (lower-case names), Content-Type and CSP included."""
    hashes: dict[bytes, list[bytes]] = {b"script": [], b"style": []}
    for kind, body in _INLINE.findall(page()):
        hashes[kind].append(b"'sha256-" + base64.b64encode(hashlib.sha256(body).digest()) + b"'")
    policy = b"; ".join(
        [
            b"default-src 'none'",
            b"script-src " + b" ".join(hashes[b"script"]),
            b"style-src " + b" ".join(hashes[b"style"]),
            b"connect-src 'self'",
            b"img-src 'self' data:",
            b"base-uri 'none'",
            b"form-action 'none'",
            b"frame-ancestors 'self'",
        ]
    )
    return (
        (b"content-type", PAGE_CONTENT_TYPE.encode()),
        (b"cache-control", b"no-cache"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", policy),
    )


__all__ = ["PAGE_CONTENT_TYPE", "page", "page_headers"]
