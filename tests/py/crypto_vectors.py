#!/usr/bin/env python3
"""Independent test vectors for src/crypto, printed as JSON on stdout.

Run by tests/crypto_vectors.rs. Uses libsodium (PyNaCl) and OpenSSL (cryptography), never our
Rust code, so agreement proves wire compatibility with NaCl/RFC implementations.

The reference server's "crypto_box" equals NaCl crypto_box over the raw X25519 secret, and its
"secret_box" with a 32-byte key k equals NaCl crypto_secretbox keyed with HSalsa20(k, 0^16).
PyNaCl does not expose HSalsa20, so it is written out below and checked against libsodium's
crypto_box_beforenm (which is exactly HSalsa20(X25519 secret, 0^16)) before use.
"""
import hashlib
import json
import struct
import sys

try:
    import nacl.bindings as sodium
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError as e:  # the Rust test reports this; it must never be skipped silently
    sys.stderr.write(f"MISSING_PYTHON_MODULE: {e}\n")
    sys.exit(3)


def rotl(v, n):
    return ((v << n) & 0xFFFFFFFF) | (v >> (32 - n))


def hsalsa20(key: bytes, inp: bytes) -> bytes:
    """HSalsa20 core (the first step of XSalsa20), from the Salsa20 specification."""
    sigma = struct.unpack("<4I", b"expand 32-byte k")
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", inp)
    x = [sigma[0], k[0], k[1], k[2], k[3], sigma[1], n[0], n[1],
         n[2], n[3], sigma[2], k[4], k[5], k[6], k[7], sigma[3]]

    def qr(a, b, c, d):
        x[b] ^= rotl((x[a] + x[d]) & 0xFFFFFFFF, 7)
        x[c] ^= rotl((x[b] + x[a]) & 0xFFFFFFFF, 9)
        x[d] ^= rotl((x[c] + x[b]) & 0xFFFFFFFF, 13)
        x[a] ^= rotl((x[d] + x[c]) & 0xFFFFFFFF, 18)

    for _ in range(10):
        qr(0, 4, 8, 12); qr(5, 9, 13, 1); qr(10, 14, 2, 6); qr(15, 3, 7, 11)
        qr(0, 1, 2, 3); qr(5, 6, 7, 4); qr(10, 11, 8, 9); qr(15, 12, 13, 14)
    return struct.pack("<8I", x[0], x[5], x[10], x[15], x[6], x[7], x[8], x[9])


def det(label: str, n: int) -> bytes:
    """Deterministic bytes, so failures are reproducible."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha512(f"{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


def reference_secret_box(key: bytes, nonce: bytes, msg: bytes) -> bytes:
    return sodium.crypto_secretbox(msg, nonce, hsalsa20(key, b"\0" * 16))


def pad(msg: bytes, n: int) -> bytes:
    return struct.pack(">H", len(msg)) + msg + b"#" * (n - len(msg) - 2)


def hkdf(salt: bytes, ikm: bytes, info: bytes, n: int) -> bytes:
    return HKDF(algorithm=hashes.SHA512(), length=n, salt=salt, info=info).derive(ikm)


h = bytes.hex
out = {"x25519": [], "crypto_box": [], "secret_box": [], "ed25519": [], "ed448": [],
       "cb_authenticate": [], "hkdf": [], "sbc": [], "pkcs8": []}

for i in range(4):
    sk_a, sk_b = det(f"xa{i}", 32), det(f"xb{i}", 32)
    pk_a, pk_b = sodium.crypto_scalarmult_base(sk_a), sodium.crypto_scalarmult_base(sk_b)
    shared = sodium.crypto_scalarmult(sk_a, pk_b)
    assert shared == sodium.crypto_scalarmult(sk_b, pk_a)
    # Self-check of the HSalsa20 above against libsodium.
    assert hsalsa20(shared, b"\0" * 16) == sodium.crypto_box_beforenm(pk_b, sk_a)
    out["x25519"].append({"sk_a": h(sk_a), "sk_b": h(sk_b), "pk_a": h(pk_a),
                          "pk_b": h(pk_b), "shared": h(shared)})
    nonce = det(f"n{i}", 24)
    msg = det(f"m{i}", 37 * i)
    out["crypto_box"].append({"sk_a": h(sk_a), "pk_b": h(pk_b), "nonce": h(nonce),
                              "msg": h(msg), "box": h(sodium.crypto_box(msg, nonce, pk_b, sk_a)),
                              "padded_len": 200,
                              "padded_box": h(sodium.crypto_box(pad(msg, 200), nonce, pk_b, sk_a))})
    body = det(f"auth{i}", 50 + i)
    auth = sodium.crypto_box(hashlib.sha512(body).digest(), nonce, pk_b, sk_a)
    out["cb_authenticate"].append({"own_sk": h(sk_a), "peer_pk": h(pk_b), "peer_sk": h(sk_b),
                                   "nonce": h(nonce), "msg": h(body), "auth": h(auth)})

for i in range(3):
    key, nonce, msg = det(f"k{i}", 32), det(f"sn{i}", 24), det(f"sm{i}", 100 * i + 1)
    out["secret_box"].append({"key": h(key), "nonce": h(nonce), "msg": h(msg),
                              "box": h(reference_secret_box(key, nonce, msg))})

for i, msg in enumerate([b"", b"abc", det("edmsg", 300)]):
    seed = det(f"ed{i}", 32)
    pk, sk = sodium.crypto_sign_seed_keypair(seed)
    sig = sodium.crypto_sign(msg, sk)[:64]
    out["ed25519"].append({"seed": h(seed), "pk": h(pk), "msg": h(msg), "sig": h(sig)})
    seed448 = det(f"ed448-{i}", 57)
    k448 = ed448.Ed448PrivateKey.from_private_bytes(seed448)
    pk448 = k448.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    out["ed448"].append({"seed": h(seed448), "pk": h(pk448), "msg": h(msg), "sig": h(k448.sign(msg))})

for name, key in [("ed25519", ed25519.Ed25519PrivateKey.from_private_bytes(det("p8", 32))),
                  ("ed448", ed448.Ed448PrivateKey.from_private_bytes(det("p8", 57)))]:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    pk = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    out["pkcs8"].append({"alg": name, "pem": pem, "pk": h(pk), "spki": h(spki)})

for salt, ikm, info, n in [(b"", b"ikm", b"", 64), (b"salt", det("ikm", 32), b"info", 88),
                           (det("s", 64), det("ikm2", 100), b"SimpleXSbChain", 200)]:
    out["hkdf"].append({"salt": h(salt), "ikm": h(ikm), "info": h(info), "len": n,
                        "okm": h(hkdf(salt, ikm, info, n))})

for i in range(2):
    salt, secret = det(f"sess{i}", 32), det(f"dh{i}", 32)
    init = hkdf(salt, secret, b"SimpleXSbChainInit", 64)
    chains = [init[:32], init[32:]]
    steps = []
    ck = chains[0]
    for j in range(3):
        o = hkdf(b"", ck, b"SimpleXSbChain", 88)
        ck, key, nonce = o[:32], o[32:64], o[64:]
        block = det(f"block{i}{j}", 20)
        steps.append({"chain_key": h(ck), "key": h(key), "nonce": h(nonce), "msg": h(block),
                      "box": h(reference_secret_box(key, nonce, pad(block, 64)))})
    out["sbc"].append({"salt": h(salt), "secret": h(secret), "ck1": h(chains[0]),
                       "ck2": h(chains[1]), "steps": steps})

json.dump(out, sys.stdout, indent=1)
