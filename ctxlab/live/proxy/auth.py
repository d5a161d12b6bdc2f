"""Client keys: resolving ``env:``/``sha256:`` secrets and checking a bearer token.

Only SHA-256 digests of client keys are kept in memory. A presented token is hashed and
compared with every configured digest using `hmac.compare_digest`, without stopping at the
first match, so the time taken says nothing about which key (or how much of one) matched.
Plaintext keys never reach a log line, an error message or a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ctxlab.errors import ConfigurationError
from ctxlab.live.proxy.config import KeyConfig

__all__ = ["ClientKey", "KeyRing", "bearer_matches", "key_digest", "resolve_secret"]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientKey:
    """A configured client: its name, limits and the digest of its key."""

    config: KeyConfig
    digest: bytes = field(repr=False)

    @property
    def name(self) -> str:
        """The key's name (the owner of its sessions, the label in logs and metrics)."""
        return self.config.name


def resolve_secret(spec: str, where: str) -> str:
    """The value of an ``env:VARIABLE`` secret.

    Raises:
        ConfigurationError: the spec is not ``env:...`` or the variable is unset or empty.
    """
    if not spec.startswith("env:") or not spec[4:]:
        raise ConfigurationError(f"{where} must be 'env:VARIABLE'")
    value = os.environ.get(spec[4:])
    if not value:
        raise ConfigurationError(
            f"{where} names the environment variable {spec[4:]}, which is not set; "
            "export it before starting the proxy"
        )
    return value


def key_digest(spec: str, where: str) -> bytes:
    """The sha256 digest of the key an ``env:``/``sha256:`` spec names."""
    if spec.startswith("sha256:"):
        hexdigest = spec[len("sha256:") :]
        if not _HEX64.fullmatch(hexdigest):
            raise ConfigurationError(
                f"{where} must be 'sha256:' followed by 64 hex digits (printf %s KEY | sha256sum)"
            )
        return bytes.fromhex(hexdigest)
    return hashlib.sha256(resolve_secret(spec, where).encode()).digest()


class KeyRing:
    """The configured client keys; `authenticate` maps an Authorization header to one.

    Raises:
        ConfigurationError: a key's secret cannot be resolved, or two keys are the same.
    """

    def __init__(self, keys: Sequence[KeyConfig]) -> None:
        self.keys = tuple(
            ClientKey(config=k, digest=key_digest(k.key, f"keys[{i}].key ({k.name})"))
            for i, k in enumerate(keys)
        )
        digests = [k.digest for k in self.keys]
        if len(set(digests)) != len(digests):
            raise ConfigurationError("two [[keys]] entries have the same key; give each its own")
        self.by_name = {k.name: k for k in self.keys}

    def authenticate(self, authorization: str | None) -> ClientKey | None:
        """The client whose key the ``Authorization: Bearer <key>`` header carries, or None."""
        token = _bearer(authorization)
        if token is None:
            return None
        presented = hashlib.sha256(token.encode()).digest()
        found: ClientKey | None = None
        for key in self.keys:  # no early exit: every digest is compared
            if hmac.compare_digest(presented, key.digest):
                found = key
        return found

    def __repr__(self) -> str:
        return f"KeyRing({', '.join(self.by_name)})"


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def bearer_matches(authorization: str | None, digest: bytes) -> bool:
    """True when the ``Authorization: Bearer <key>`` header carries the key of `digest`."""
    token = _bearer(authorization)
    presented = hashlib.sha256((token or "").encode()).digest()
    return token is not None and hmac.compare_digest(presented, digest)
