#!/usr/bin/env python3
"""Independent check of our tls-unique: an OpenSSL (pyOpenSSL) client.

Connects to a test server on 127.0.0.1:PORT, completes a TLS 1.3 handshake, reads the line the
server sends (its session ID in hex), and prints one JSON object with what OpenSSL saw:
its own Finished (get_finished(), tls-unique on the client side), the negotiated ALPN, the
number of certificates the server sent, and the key-exchange group.

pyOpenSSL is required: without it this script fails (exit 2), it never skips.
"""

import argparse
import json
import signal
import socket
import sys

try:
    from OpenSSL import SSL
    from OpenSSL._util import lib as _lib
except ImportError as e:  # pragma: no cover - the message is the point
    print(
        "pyOpenSSL is required for the tls-unique check (pip install pyopenssl): %s" % e,
        file=sys.stderr,
    )
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--groups", default="", help="OpenSSL group list, e.g. X448:X25519")
    ap.add_argument("--alpn", default="", help="ALPN protocol to offer, e.g. smp/1")
    args = ap.parse_args()

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
    # The identity check is ours to test elsewhere; here we only look at the handshake.
    ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
    if args.groups:
        if _lib.SSL_CTX_set1_curves_list(ctx._context, args.groups.encode()) != 1:
            print("OpenSSL refused groups %r" % args.groups, file=sys.stderr)
            sys.exit(3)
    if args.alpn:
        ctx.set_alpn_protos([args.alpn.encode()])

    # pyOpenSSL wants a blocking socket (a socket timeout surfaces as WantReadError);
    # an alarm bounds the whole run instead.
    signal.alarm(60)
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=20)
    sock.settimeout(None)
    conn = SSL.Connection(ctx, sock)
    conn.set_connect_state()
    conn.do_handshake()

    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(1024)
        if not chunk:
            break
        line += chunk

    finished = conn.get_finished()
    peer_finished = conn.get_peer_finished()
    alpn = conn.get_alpn_proto_negotiated()
    chain = conn.get_peer_cert_chain() or []
    group = conn.get_group_name() if hasattr(conn, "get_group_name") else None
    out = {
        "finished": finished.hex() if finished else None,
        "peer_finished": peer_finished.hex() if peer_finished else None,
        "alpn": alpn.decode() if alpn else None,
        "chain_len": len(chain),
        "group": group.decode() if isinstance(group, bytes) else group,
        "version": conn.get_protocol_version_name(),
        "cipher": conn.get_cipher_name(),
        "server_line": line.decode().strip(),
        "openssl": SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode(),
    }
    try:
        conn.shutdown()
    except SSL.Error:
        pass
    sock.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
