#!/usr/bin/env python3
"""A TLS front for a PostgreSQL server, for tests.

    tls_proxy.py CERT KEY UPSTREAM_PORT

Listens on a free loopback port (printed on the first line of stdout), answers
each client's SSLRequest with "S", ends TLS itself and relays the bytes to the
upstream server over plain TCP. It writes the server's answers to the client
in TLS records of up to 16 KB, as a connection pooler or another server of the
same protocol may, where PostgreSQL itself writes at most 8 KB at a time: a
client that reads part of a record finds the rest in its TLS library, not in
the socket.
"""

import socket
import ssl
import struct
import sys
import threading

SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def relay(source_recv, sink_send, closers):
    try:
        while True:
            data = source_recv(256 * 1024)
            if not data:
                break
            sink_send(data)
    except OSError:
        pass
    finally:
        for close in closers:
            try:
                close()
            except OSError:
                pass


def serve(client, context, upstream_port):
    try:
        if client.recv(8, socket.MSG_WAITALL) != SSL_REQUEST:
            client.close()
            return
        client.sendall(b"S")
        tls = context.wrap_socket(client, server_side=True)
        upstream = socket.create_connection(("127.0.0.1", upstream_port))
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        client.close()
        return
    closers = [lambda: upstream.shutdown(socket.SHUT_RDWR), tls.close, upstream.close]
    threading.Thread(target=relay, args=(tls.recv, upstream.sendall, closers), daemon=True).start()
    relay(upstream.recv, tls.sendall, closers)


def main():
    cert, key, upstream_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(client, context, upstream_port), daemon=True).start()


if __name__ == "__main__":
    main()
