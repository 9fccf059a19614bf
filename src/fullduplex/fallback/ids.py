"""Session ids of the fallback transports: unguessable, and signed with the owner's name.

An id is ``<owner>.<nonce>.<mac>``: ``owner`` names the process that holds the session (so
that a later layer can route a request that reached another process to it), ``nonce`` is 128
random bits, and ``mac`` is an HMAC-SHA256 of both under a key that only the server knows. A
forged or altered id fails the check without a table lookup, and the owner named in a valid
one can be trusted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

__all__ = ["SessionIds"]

_NONCE_BYTES = 16
_MAC_BYTES = 16
# What an owner name may contain: it travels in URLs and log lines.
_OWNER_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64_RE = re.compile(r"[A-Za-z0-9_-]+")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SessionIds:
    """Issues and checks signed session ids.

    Args:
        owner: This process's name (letters, digits, ``-`` and ``_``; at most 64).
        key: The HMAC key; None draws 32 random bytes (ids then hold only in this process,
            which is all a single process needs; processes that route to one another share
            one key).

    Raises:
        ValueError: ``owner`` is not a valid name, or ``key`` is shorter than 16 bytes.
    """

    __slots__ = ("_key", "owner")

    def __init__(self, owner: str, key: bytes | None = None) -> None:
        if _OWNER_RE.fullmatch(owner) is None:
            raise ValueError(f"invalid session owner name: {owner!r}")
        if key is not None and len(key) < 16:
            raise ValueError("the session id key must have at least 16 bytes")
        self.owner = owner
        self._key = key if key is not None else os.urandom(32)

    def _mac(self, owner: str, nonce: str) -> str:
        digest = hmac.new(self._key, f"{owner}.{nonce}".encode("ascii"), hashlib.sha256)
        return _b64(digest.digest()[:_MAC_BYTES])

    def new(self) -> str:
        """A new id owned by this process."""
        nonce = _b64(os.urandom(_NONCE_BYTES))
        return f"{self.owner}.{nonce}.{self._mac(self.owner, nonce)}"

    def owner_of(self, sid: str) -> str:
        """The owner named by ``sid``, after checking its signature.

        Raises:
            ValueError: ``sid`` is malformed or its signature is wrong (one-line reason).
        """
        parts = sid.split(".")
        if len(parts) != 3 or len(sid) > 200:
            raise ValueError("malformed session id")
        owner, nonce, mac = parts
        if _OWNER_RE.fullmatch(owner) is None or _B64_RE.fullmatch(nonce) is None:
            raise ValueError("malformed session id")
        if not hmac.compare_digest(
            mac.encode("ascii", "replace"), self._mac(owner, nonce).encode()
        ):
            raise ValueError("session id signature is invalid")
        return owner
