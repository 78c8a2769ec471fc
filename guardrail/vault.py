"""Reversible pseudonyms: sealed mappings from ``<PERSON_1>`` back to the value, and restoring text.

The ``pseudonym`` operator replaces each value with a numbered placeholder (``<PERSON_1>``). An agent
works on that text and the user reads its answer with the originals put back. The mapping leaves the
guardrail only **sealed**: its entries encrypted and authenticated with AES-GCM under a key the caller
holds (``GUARDRAIL_VAULT_KEY``), so whoever carries it between turns (an agent framework, a proxy, a
log) learns nothing from it, cannot change it unnoticed, and cannot move it to another conversation
(``scope``) or use it after it expires. Nothing here keeps state: the sealed mapping is the state.

A sealed mapping reads ``grv1.<key id>.<base64url(nonce | ciphertext)>``. The key id names the key
that sealed it, so keys can rotate: a vault seals with its first key and opens with any it holds.

Restoring tolerates what a model does to a placeholder: case (``<person_1>``), spaces and separators
(``< PERSON 1 >``, ``<PERSON-1>``), other brackets (``[PERSON_1]``, ``{PERSON_1}``), HTML or Markdown
escaping (``&lt;PERSON_1&gt;``, ``\\<PERSON_1\\>``), lost brackets (``PERSON_1``), and in a stream a
placeholder split across chunks (:class:`RestoreStream`). A placeholder the mapping does not hold is an
error unless the caller asks to keep it. No error message here quotes a value or a key.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import regex
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from guardrail.redact import MAX_PLACEHOLDER, PLACEHOLDER, Pseudonyms, Redacted, placeholder_key

KEY_ENV = "GUARDRAIL_VAULT_KEY"
"""Environment variable holding the vault's keys: ``ID:BASE64[,ID:BASE64...]``, the first one seals."""

DEFAULT_TTL_S = 24 * 3600.0
"""How long a sealed mapping opens (seconds): a day, the span of one conversation."""

UNKNOWN = ("error", "keep")
"""What restoring does with a placeholder the mapping does not hold: refuse the text, or leave it."""

_VERSION = "grv1"
_NONCE = 12
_TAG = 16
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_KEY_SIZES = (16, 24, 32)


@dataclass(frozen=True, slots=True)
class Sealed:
    """Pseudonymised texts and the sealed mapping back to their values."""

    results: list[Redacted]
    """One per text, in order."""
    mapping: str
    """The sealed mapping from the texts' pseudonyms back to the values (``grv1.<key id>.<...>``)."""


class VaultError(ValueError):
    """A key, sealed mapping or placeholder that cannot be used; the message never holds a value or key."""


class VaultMissing(VaultError):
    """Sealing or opening was asked of a process that was given no vault key."""


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional."""
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Vault:
    """Seals and opens pseudonym mappings under AES-GCM keys named by id; the first key seals.

    ``ttl_s``: how long a mapping it seals opens (``None``: for ever). ``clock`` gives the time (tests).
    """

    __slots__ = ("_clock", "_keys", "key_id", "ttl_s")

    def __init__(
        self,
        keys: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
        *,
        ttl_s: float | None = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
    ):
        pairs = list(keys.items() if isinstance(keys, Mapping) else keys)
        if not pairs:
            raise VaultError("a vault needs at least one key")
        self._keys: dict[str, AESGCM] = {}
        for i, (kid, key) in enumerate(pairs, 1):
            if not isinstance(kid, str) or not _KEY_ID.fullmatch(kid):
                raise VaultError(f"key {i}: its id must be 1-32 letters, digits, '-' or '_'")
            if kid in self._keys:
                raise VaultError(f"key {i}: id {kid!r} is given twice")
            if len(key) not in _KEY_SIZES:
                raise VaultError(f"key {kid!r} has {len(key)} bytes; AES-GCM needs 16, 24 or 32")
            self._keys[kid] = AESGCM(bytes(key))
        if ttl_s is not None and ttl_s <= 0:
            raise VaultError("ttl_s must be positive (None: mappings never expire)")
        self.key_id = pairs[0][0]
        """The id of the key that seals."""
        self.ttl_s = ttl_s
        self._clock = clock

    def __repr__(self) -> str:
        return f"Vault(key_id={self.key_id!r}, keys={len(self._keys)}, ttl_s={self.ttl_s})"  # never a key

    @classmethod
    def from_spec(cls, spec: str, *, ttl_s: float | None = DEFAULT_TTL_S) -> Vault:
        """A vault from ``ID:BASE64[,ID:BASE64...]`` (the format of ``GUARDRAIL_VAULT_KEY``)."""
        pairs = []
        for i, part in enumerate(p for p in spec.split(",") if p.strip()):
            kid, sep, b64 = part.strip().partition(":")
            try:
                key = _b64decode(b64) if sep else b""
            except (binascii.Error, ValueError):
                key = b""
            if not sep or not key:
                raise VaultError(
                    f"{KEY_ENV} entry {i + 1} is not ID:BASE64 (make one with `guardrail vault-key`)"
                )
            pairs.append((kid, key))
        if not pairs:
            raise VaultError(f"{KEY_ENV} is empty (make a key with `guardrail vault-key`)")
        return cls(pairs, ttl_s=ttl_s)

    @classmethod
    def from_env(cls, *, ttl_s: float | None = DEFAULT_TTL_S) -> Vault:
        """The vault of ``GUARDRAIL_VAULT_KEY``; :class:`VaultMissing` when it is not set."""
        spec = os.environ.get(KEY_ENV, "")
        if not spec.strip():
            raise VaultMissing(f"no vault key: set {KEY_ENV} (make one with `guardrail vault-key`)")
        return cls.from_spec(spec, ttl_s=ttl_s)

    @staticmethod
    def new_key(key_id: str = "k1") -> str:
        """A fresh 256-bit key as one ``ID:BASE64`` entry of ``GUARDRAIL_VAULT_KEY``."""
        if not _KEY_ID.fullmatch(key_id):
            raise VaultError("a key id is 1-32 letters, digits, '-' or '_'")
        return f"{key_id}:{_b64encode(secrets.token_bytes(32))}"

    @staticmethod
    def _aad(kid: str, scope: str) -> bytes:
        # The header and the scope are authenticated: a mapping opens only under its own key id and scope.
        return f"{_VERSION}.{kid}.".encode() + b"\x00" + scope.encode("utf-8", "surrogatepass")

    def seal(self, pseudonyms: Pseudonyms, scope: str = "") -> str:
        """``pseudonyms`` sealed under the first key, bound to ``scope`` (e.g. a conversation id)."""
        now = int(self._clock())
        payload = {
            "iat": now,
            "exp": 0 if self.ttl_s is None else now + int(self.ttl_s),
            "e": [list(e) for e in pseudonyms.entries()],
        }
        nonce = secrets.token_bytes(_NONCE)
        body = self._keys[self.key_id].encrypt(
            nonce, json.dumps(payload, separators=(",", ":")).encode("ascii"), self._aad(self.key_id, scope)
        )
        return f"{_VERSION}.{self.key_id}.{_b64encode(nonce + body)}"

    def open(self, mapping: str, scope: str = "") -> Pseudonyms:
        """The pseudonyms sealed in ``mapping`` for ``scope``; :class:`VaultError` if it is not one of
        this vault's mappings for that scope, was changed or cut, or has expired."""
        corrupt = VaultError("the mapping is not a sealed guardrail mapping (truncated or corrupt)")
        if not isinstance(mapping, str):
            raise corrupt
        version, _, rest = mapping.strip().partition(".")
        kid, _, b64 = rest.partition(".")
        if version != _VERSION or not _KEY_ID.fullmatch(kid):
            raise corrupt
        try:
            raw = _b64decode(b64)
        except (binascii.Error, ValueError):
            raise corrupt from None
        if len(raw) < _NONCE + _TAG:
            raise corrupt
        aead = self._keys.get(kid)
        if aead is None:
            raise VaultError(f"the mapping was sealed under key id {kid!r}, which this vault does not hold")
        try:
            plain = aead.decrypt(raw[:_NONCE], raw[_NONCE:], self._aad(kid, scope))
        except InvalidTag:
            raise VaultError(
                "the mapping failed authentication: changed, cut, sealed under another key of the same id, "
                "or for another scope"
            ) from None
        try:
            payload = json.loads(plain)
            exp = int(payload["exp"])
            entries = [(str(label), int(n), str(v)) for label, n, v in payload["e"]]
        except (ValueError, KeyError, TypeError):
            raise VaultError("the mapping's contents are malformed") from None
        if exp and self._clock() > exp:
            raise VaultError("the mapping has expired; redact again to seal a new one")
        return Pseudonyms.from_entries(entries)


# -- restoring ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Restored:
    """A text with its placeholders replaced by the values they stood for."""

    text: str
    """The restored text."""
    restored: int
    """Placeholders replaced."""
    unknown: tuple[str, ...] = ()
    """Placeholders the mapping does not hold, left as they were (``unknown="keep"``), in order."""


class RestoreStream:
    """Restores a text that arrives in chunks (a model's streamed answer): :meth:`feed` returns what can be
    released, holding back a tail that may be the start of a placeholder; :meth:`finish` the rest. The
    concatenated output equals :func:`restore` of the concatenated input."""

    __slots__ = ("_buf", "_pos", "_pseudonyms", "_unknown", "restored", "unknown")

    def __init__(self, pseudonyms: Pseudonyms, *, unknown: str = "error"):
        if unknown not in UNKNOWN:
            raise VaultError(f"unknown must be one of {', '.join(UNKNOWN)}")
        self._pseudonyms = pseudonyms
        self._unknown = unknown
        self._buf = ""
        self._pos = 0  # where the unreleased text starts in _buf (one released character is kept before
        # it: the bare form's look-behind reads it)
        self.restored = 0
        self.unknown: list[str] = []

    def _replace(self, m: regex.Match[str]) -> str:
        label, n = placeholder_key(m)
        value = self._pseudonyms.surface(label, n)
        if value is not None:
            self.restored += 1
            return value
        placeholder = f"<{label}_{n}>"
        if self._unknown == "error":
            raise VaultError(f"placeholder {placeholder} is not in the mapping")
        self.unknown.append(placeholder)
        return m.group(0)

    def _hold(self, buf: str, pos: int) -> int:
        """Where the tail that may still become a placeholder starts (``len(buf)``: none)."""
        for p in range(max(pos, len(buf) - MAX_PLACEHOLDER), len(buf)):
            m = PLACEHOLDER.match(buf, p, partial=True)
            # partial: cut off by the end; a whole one that reaches the end may grow (PERSON_1 -> PERSON_12)
            if m is not None and (m.partial or m.end() == len(buf)):
                return p
        return len(buf)

    def _run(self, final: bool) -> str:
        out: list[str] = []
        buf, pos = self._buf, self._pos
        while True:
            hold = len(buf) if final else self._hold(buf, pos)
            m = PLACEHOLDER.search(buf, pos)
            if m is None or m.start() >= hold:
                break
            out.append(buf[pos : m.start()])
            out.append(self._replace(m))
            pos = m.end()
        out.append(buf[pos:hold])
        pos = hold
        keep = max(pos - 1, 0)
        self._buf, self._pos = buf[keep:], pos - keep
        return "".join(out)

    def feed(self, chunk: str) -> str:
        """Take the next chunk; returns the restored text that no later chunk can change."""
        if not isinstance(chunk, str):
            raise VaultError("a chunk must be a str")
        self._buf += chunk
        return self._run(final=False)

    def finish(self) -> str:
        """The rest, at the end of the input."""
        return self._run(final=True)

    def result(self, text: str) -> Restored:
        """A :class:`Restored` of ``text`` (all output) with this stream's counts."""
        return Restored(text, self.restored, tuple(self.unknown))


def restore(text: str, pseudonyms: Pseudonyms, *, unknown: str = "error") -> Restored:
    """``text`` with every placeholder of ``pseudonyms`` replaced by its value (see the module docstring
    for the forms read); a placeholder it does not hold raises :class:`VaultError` (``unknown="error"``)
    or is left in place (``"keep"``)."""
    if not isinstance(text, str):
        raise VaultError("text must be a str")
    stream = RestoreStream(pseudonyms, unknown=unknown)
    return stream.result(stream.feed(text) + stream.finish())
