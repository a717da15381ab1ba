#!/usr/bin/env python3
"""Sends N requests one after another on one keep-alive connection, for the
instruction counts of scripts/bench (the server under qemu-user): each must
answer 2xx.

    bench/requests.py PORT H|K|D1 N

H is GET /healthz; K is GET /v1/keys with BENCH_TOKEN; D1 is POST /v1/documents
of bench/factura.json with BENCH_TOKEN and the issuer BENCH_ISSUERS (one id).
"""
import http.client
import os
import pathlib
import sys

port, scenario, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
headers = {}
body = None
if scenario == "H":
    method, path = "GET", "/healthz"
else:
    headers["Authorization"] = "Bearer " + os.environ["BENCH_TOKEN"]
    if scenario == "K":
        method, path = "GET", "/v1/keys"
    elif scenario == "D1":
        method, path = "POST", "/v1/documents"
        body = (pathlib.Path(__file__).parent / "factura.json").read_bytes().strip()
        headers["Content-Type"] = "application/json"
        headers["X-Issuer-Id"] = os.environ["BENCH_ISSUERS"]
    else:
        sys.exit(f"requests.py: unknown scenario {scenario}")

connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for _ in range(count):
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    text = response.read()
    if not 200 <= response.status < 300:
        sys.exit(f"requests.py: {method} {path} answered {response.status}: {text[:300]!r}")
