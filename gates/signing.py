"""ed25519 keys for signing ledger entries and attestations (DSSE).

The private key lives outside the vault: `gates keygen --out FILE` writes FILE (PEM, mode 0600)
and FILE.pub; `gates certify` signs when GATES_SIGNING_KEY names that file (or
GATES_SIGNING_KEY_PEM holds its text); `gates verify --public-key FILE.pub` checks signatures.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gates.exceptions import SigningKeyError

KEY_ENV = "GATES_SIGNING_KEY"
KEY_PEM_ENV = "GATES_SIGNING_KEY_PEM"
DSSE_PAYLOAD_TYPE = "application/vnd.in-toto+json"


@dataclass(frozen=True, slots=True)
class Signer:
    private: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    @property
    def public_key_b64(self) -> str:
        return public_key_b64(self.private.public_key())

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.private.sign(message)).decode("ascii")


def key_id(public: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the sha256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_b64(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_from_b64(text: str) -> Ed25519PublicKey | None:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError:
        return None


def generate(out: Path, *, forbidden: Path | None = None) -> tuple[Path, Path]:
    """Write a new private key to `out` (0600) and its public key to `out.pub`."""
    target = out.resolve()
    if forbidden is not None and target.is_relative_to(forbidden.resolve()):
        raise SigningKeyError(f"{out}: a private key must never be written inside the vault")
    public_path = target.with_name(target.name + ".pub")
    for path in (target, public_path):
        if path.exists():
            raise SigningKeyError(f"{path} exists; choose another --out or remove it")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(private_pem)
        public_path.write_bytes(public_pem)
    except OSError as exc:
        raise SigningKeyError(f"{out}: cannot write the key: {exc.strerror or exc}") from None
    return target, public_path


def signer_from_environment() -> Signer | None:
    """The configured signing key, or None when signing is off."""
    pem_text = os.environ.get(KEY_PEM_ENV)
    path = os.environ.get(KEY_ENV)
    if pem_text:
        data, where = pem_text.encode(), KEY_PEM_ENV
    elif path:
        try:
            data, where = Path(path).read_bytes(), path
        except OSError as exc:
            raise SigningKeyError(f"{KEY_ENV}={path}: cannot read: {exc.strerror}") from None
    else:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{where}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{where}: not an ed25519 key (make one with `gates keygen`)")
    return Signer(key)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise SigningKeyError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path}: not an ed25519 public key")
    return key


def verify_signature(public: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    try:
        public.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def dsse_envelope(payload: bytes, signer: Signer) -> dict[str, object]:
    return {
        "payloadType": DSSE_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {"keyid": signer.key_id, "sig": signer.sign(pae(DSSE_PAYLOAD_TYPE, payload))}
        ],
    }
