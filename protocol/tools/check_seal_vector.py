#!/usr/bin/env python3
"""Independent check of fedanno's envelope sealing construction (protocol/src/envelope/seal.rs).

Reads the hex of the golden sealed envelope from protocol/src/envelope/tests.rs
(`golden_sealed_envelope_bytes`), parses the postcard bytes by hand, verifies the sender's Ed25519
signature over "fedanno-envelope-v1\\0" || body, re-derives each recipient's wrap key
(X25519 + HKDF-SHA256), unwraps the content key and opens the payload (ChaCha20-Poly1305), all
with the Python `cryptography` package. Test keys: Ed25519 seed [11]*32 (site-1),
X25519 secrets [102]*32 (site-2) and [103]*32 (site-3).

Usage: python3 protocol/tools/check_seal_vector.py
"""
import hashlib
import pathlib
import re

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


class Reader:
    def __init__(self, b):
        self.b, self.i = b, 0

    def take(self, n):
        out = self.b[self.i:self.i + n]
        assert len(out) == n, "truncated"
        self.i += n
        return out

    def varint(self):
        v, shift = 0, 0
        while True:
            (x,) = self.take(1)
            v |= (x & 0x7F) << shift
            shift += 7
            if x < 0x80:
                return v

    def bytes(self):
        return self.take(self.varint())

    def str(self):
        return self.bytes().decode()

    def option(self, f):
        return f() if self.take(1)[0] == 1 else None


src = pathlib.Path(__file__).resolve().parents[1] / "src/envelope/tests.rs"
text = src.read_text()
hexstr = re.search(r'fn golden_sealed_envelope_bytes\(\).*?"([0-9a-f]+)"', text, re.S).group(1)
env = Reader(bytes.fromhex(hexstr))
body = env.bytes()
signature = env.take(64)
assert env.i == len(env.b), "trailing bytes"

sender_pk = Ed25519PrivateKey.from_private_bytes(bytes([11] * 32)).public_key()
sender_pk.verify(signature, b"fedanno-envelope-v1\0" + body)

r = Reader(body)
version = r.varint()
consortium = r.str()
sender = r.str()
recipient = r.option(r.str)
study = r.option(r.str)
rnd, seq, ts, kind = r.varint(), r.varint(), r.varint(), r.varint()
header_bytes = body[:r.i]
assert r.varint() == 1, "payload is sealed"
ephemeral = r.take(32)
wrapped = [(r.str(), r.take(48)) for _ in range(r.varint())]
ciphertext = r.bytes()
assert r.i == len(body)
print(f"v{version} {consortium} {sender}->{recipient} study={study} round={rnd} seq={seq} ts={ts} kind={kind}")

for site, secret_byte in [("site-2", 102), ("site-3", 103)]:
    sk = X25519PrivateKey.from_private_bytes(bytes([secret_byte] * 32))
    my_pk = sk.public_key().public_bytes(*RAW)
    shared = sk.exchange(X25519PublicKey.from_public_bytes(ephemeral))
    w = HKDF(hashes.SHA256(), 32, b"fedanno-seal-v1\0", ephemeral + my_pk + site.encode()).derive(shared)
    wrapped_key = dict(wrapped)[site]
    content_key = ChaCha20Poly1305(w).decrypt(bytes(12), wrapped_key, hashlib.sha256(header_bytes).digest())
    payload = ChaCha20Poly1305(content_key).decrypt(bytes(12), ciphertext, header_bytes)
    print(site, "opens:", payload)
    assert payload == b"masked vector"
print("OK: signature, key derivation, key wrap and payload AEAD match")
