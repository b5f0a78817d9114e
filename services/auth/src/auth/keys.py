"""The signing key ring: Ed25519 keys from config, one signing, all verifying.

Keys come from PEM files and from a PEM secret. A private key signs (if chosen) and
verifies; a public key only verifies, which is how a retired key stays trusted until the
last token it signed has expired. Every key's id (`kid`) is its RFC 7638 JWK thumbprint, so
it cannot collide or be mislabelled. With no key configured, a development key is generated
once and kept in `AUTH_KEY_DIR`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from auth.config import AuthConfig
from kiln.common.config import ConfigError
from kiln.common.tokens import public_jwk

log = structlog.get_logger("auth.keys")

DEV_KEY_FILE = "signing-key.pem"
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def thumbprint(key: ed25519.Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint of an Ed25519 public key (base64url, no padding)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclasses.dataclass(frozen=True)
class KeyRing:
    """The keys of this process: `signing_kid` signs, every key in `public_keys` verifies."""

    signing_kid: str
    signing_key: ed25519.Ed25519PrivateKey
    public_keys: dict[str, ed25519.Ed25519PublicKey]

    def jwks(self) -> dict[str, list[dict[str, object]]]:
        """The JSON Web Key Set of every verifying key, the signing key first."""
        ordered = sorted(self.public_keys, key=lambda kid: kid != self.signing_kid)
        return {"keys": [public_jwk(kid, self.public_keys[kid]) for kid in ordered]}


_Key = ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey


def parse_pem(text: str, source: str) -> list[_Key]:
    """Every Ed25519 key in `text`; ConfigError naming `source` for anything else."""
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(text)]
    if not blocks:
        raise ConfigError(source, "holds no PEM key")
    found: list[_Key] = []
    for block in blocks:
        data = block.encode()
        try:
            if "PUBLIC KEY" in block.split("\n", 1)[0]:
                key: object = serialization.load_pem_public_key(data)
            else:
                key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigError(source, "holds a PEM block that is not a readable key") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
            raise ConfigError(source, "holds a key that is not Ed25519")
        found.append(key)
    return found


def load_key_ring(config: AuthConfig) -> KeyRing:
    """The key ring `config` describes; ConfigError naming the variable when it is wrong."""
    keys: list[_Key] = []
    for path in config.signing_key_files:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(
                "AUTH_SIGNING_KEY_FILES", f"cannot read {path}: {exc.strerror}"
            ) from None
        keys += parse_pem(text, "AUTH_SIGNING_KEY_FILES")
    if config.signing_keys_pem.strip():
        keys += parse_pem(config.signing_keys_pem.replace("\\n", "\n"), "AUTH_SIGNING_KEYS")
    if not keys:
        if not config.generate_key:
            raise ConfigError(
                "AUTH_SIGNING_KEY_FILES",
                "no signing key is configured (set it or AUTH_SIGNING_KEYS, or allow "
                "AUTH_GENERATE_KEY for development)",
            )
        keys = [development_key(config.key_dir)]
    return _ring(keys, config.signing_key_id)


def _ring(keys: list[_Key], wanted_kid: str) -> KeyRing:
    public: dict[str, ed25519.Ed25519PublicKey] = {}
    private: dict[str, ed25519.Ed25519PrivateKey] = {}
    for key in keys:
        public_key = key.public_key() if isinstance(key, ed25519.Ed25519PrivateKey) else key
        kid = thumbprint(public_key)
        public.setdefault(kid, public_key)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            private.setdefault(kid, key)
    if not private:
        raise ConfigError("AUTH_SIGNING_KEY_FILES", "lists only public keys; one must sign")
    if wanted_kid and wanted_kid not in private:
        raise ConfigError("AUTH_SIGNING_KEY_ID", "names no configured private key")
    signing_kid = wanted_kid or next(iter(private))
    log.info("signing_keys_loaded", signing_kid=signing_kid, kids=list(public))
    return KeyRing(signing_kid, private[signing_kid], public)


def development_key(directory: Path) -> ed25519.Ed25519PrivateKey:
    """The key kept in `directory`, generated (mode 0600) on first use."""
    path = directory / DEV_KEY_FILE
    if not path.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Written aside, then linked into place: link() fails if the name exists, so of two
        # processes starting at once one key wins and neither reads a half-written file.
        staging = directory / f".{DEV_KEY_FILE}.{os.getpid()}"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        try:
            os.link(staging, path)
            log.warning("development_signing_key_generated", path=str(path))
        except FileExistsError:
            pass
        finally:
            staging.unlink(missing_ok=True)
    try:
        keys = parse_pem(path.read_text(), "AUTH_KEY_DIR")
    except OSError as exc:
        raise ConfigError("AUTH_KEY_DIR", f"cannot read {path}: {exc.strerror}") from None
    if not isinstance(keys[0], ed25519.Ed25519PrivateKey):
        raise ConfigError("AUTH_KEY_DIR", f"{path} must hold a private key")
    return keys[0]
