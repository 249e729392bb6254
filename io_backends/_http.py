"""Small h11 helpers shared by the host's HTTP front (:mod:`._http_front`)."""

from __future__ import annotations

import h11


class BodyTooLarge(Exception):
    """The request body exceeds the limit; answer 413."""


def header(request: h11.Request, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case), or None."""
    for key, value in request.headers:
        if key == name:
            return bytes(value)
    return None
