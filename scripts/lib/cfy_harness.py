"""Shared helpers for scripts/hostile, scripts/fuzz and scripts/faults.

Only the python3 standard library and `requests`. Nothing here works around
server behaviour: helpers that set state up fail loudly (SetupError) when the
server does not answer as the contract (the API contract) says.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import Any, Iterable

import requests

PROBLEM_CODES = {
    "VALIDATION_ERROR", "BAD_REQUEST", "UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND", "CONFLICT",
    "PAYLOAD_TOO_LARGE", "RATE_LIMITED", "INTERNAL", "SERVICE_UNAVAILABLE",
}
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# Words that must never reach a client (SQL, driver or internal names).
LEAK_RE = re.compile(
    r"(SQLSTATE|syntax error|relation \"|violates .* constraint|libpq|PQexec|pg_catalog|current_tenant_id|"
    r"duplicate key|Fatal error|\.swift:|stack trace|Traceback|NIOCore|Hummingbird\.|PostgresError)",
    re.IGNORECASE,
)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SetupError(Exception):
    """The server did not answer a set-up request as the contract says."""


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        sys.stderr.write(f"missing environment variable {name}\n")
        sys.exit(2)
    return value


def describe(resp: requests.Response | None, limit: int = 600) -> str:
    """The request and response in a form that can be pasted into a bug report."""
    if resp is None:
        return "(no response)"
    req = resp.request
    body = req.body
    if isinstance(body, bytes):
        shown = body[:limit].decode("utf-8", "backslashreplace")
        if len(body) > limit:
            shown += f"... ({len(body)} bytes)"
    elif isinstance(body, str):
        shown = body[:limit] + (f"... ({len(body)} chars)" if len(body) > limit else "")
    else:
        shown = ""
    headers = {k: (v if len(v) < 200 else v[:60] + f"...({len(v)} chars)") for k, v in req.headers.items()
               if k.lower() not in ("user-agent", "accept-encoding", "accept", "connection")}
    text = resp.text
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text)} chars)"
    return (f"{req.method} {req.url} headers={headers} body={shown!r}\n"
            f"    -> {resp.status_code} {dict((k, v) for k, v in resp.headers.items() if k.lower() in ('content-type', 'x-request-id', 'www-authenticate', 'retry-after', 'idempotent-replayed'))} {text!r}")


class Tally:
    """Counts cases; every case is one line in verbose mode, failures always."""

    def __init__(self, name: str):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.failures: list[str] = []
        self.verbose = os.environ.get("VERBOSE") == "1"
        self.started = time.monotonic()

    def check(self, condition: bool, label: str, detail: str = "") -> bool:
        if condition:
            self.passed += 1
            if self.verbose:
                print(f"  ok   {label}", flush=True)
        else:
            self.failed += 1
            line = f"  FAIL {label}" + (f"\n    {detail}" if detail else "")
            self.failures.append(line)
            print(line, flush=True)
        return condition

    def fail(self, label: str, detail: str = "") -> bool:
        return self.check(False, label, detail)

    def section(self, title: str) -> None:
        print(f"-- {title}", flush=True)

    def finish(self) -> int:
        elapsed = time.monotonic() - self.started
        if self.failures:
            print(f"\n{len(self.failures)} failure(s):")
            for line in self.failures:
                print(line)
        print(f"({elapsed:.1f} s)")
        print(f"{self.name}: {self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0


class Api:
    """A thin `requests` wrapper that knows the service's headers."""

    def __init__(self, base: str, timeout: float = 20.0):
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def request(self, method: str, path: str, *, key: str | None = None, auth: str | None = None,
                issuer: Any = None, json_body: Any = None, data: bytes | str | None = None,
                headers: dict[str, str] | None = None, timeout: float | None = None,
                content_type: str | None = "application/json") -> requests.Response:
        h: dict[str, str] = {}
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        if auth is not None:
            h["Authorization"] = auth
        if issuer is not None:
            h["X-Issuer-Id"] = str(issuer)
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
        if data is not None and content_type:
            h["Content-Type"] = content_type
        if headers:
            h.update(headers)
        if isinstance(data, str):
            data = data.encode("utf-8")
        return self.session.request(method, self.base + path, data=data, headers=h,
                                    timeout=timeout or self.timeout, allow_redirects=False)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)


def problem_issues(resp: requests.Response, status: int | Iterable[int] | None = None,
                   code: str | Iterable[str] | None = None) -> list[str]:
    """What is wrong with `resp` as the contract's problem document (empty: nothing)."""
    issues: list[str] = []
    statuses = {status} if isinstance(status, int) else (set(status) if status is not None else None)
    codes = {code} if isinstance(code, str) else (set(code) if code is not None else None)
    if statuses is not None and resp.status_code not in statuses:
        issues.append(f"status {resp.status_code}, expected {sorted(statuses)}")
    if resp.status_code >= 500 and (statuses is None or resp.status_code not in statuses):
        issues.append("server error")
    ctype = resp.headers.get("Content-Type", "")
    if not ctype.startswith("application/problem+json"):
        issues.append(f"Content-Type {ctype!r}, expected application/problem+json")
    rid = resp.headers.get("X-Request-Id")
    if not rid or not REQUEST_ID_RE.match(rid):
        issues.append(f"X-Request-Id header {rid!r} missing or not sane")
    try:
        body = resp.json()
    except ValueError:
        issues.append("body is not JSON")
        return issues
    if not isinstance(body, dict):
        issues.append("body is not a JSON object")
        return issues
    if body.get("ok") is not False:
        issues.append(f"ok={body.get('ok')!r}, expected false")
    if body.get("status") != resp.status_code:
        issues.append(f"body status {body.get('status')!r} != HTTP status {resp.status_code}")
    if body.get("code") not in PROBLEM_CODES:
        issues.append(f"code {body.get('code')!r} is not a contract code")
    elif codes is not None and body.get("code") not in codes:
        issues.append(f"code {body.get('code')!r}, expected {sorted(codes)}")
    for member in ("type", "title", "detail", "instance", "requestId"):
        if not isinstance(body.get(member), str):
            issues.append(f"member {member!r} missing or not a string")
    if rid and body.get("requestId") != rid:
        issues.append(f"requestId {body.get('requestId')!r} != X-Request-Id {rid!r}")
    if body.get("code") == "VALIDATION_ERROR":
        errors = body.get("errors")
        if not (isinstance(errors, list) and errors and all(
                isinstance(e, dict) and isinstance(e.get("field"), str) and isinstance(e.get("message"), str)
                for e in errors)):
            issues.append(f"VALIDATION_ERROR without a proper errors array: {errors!r}")
    if LEAK_RE.search(resp.text or ""):
        issues.append("the problem document leaks internals (SQL, driver or source names)")
    if resp.status_code == 401 and not resp.headers.get("WWW-Authenticate", "").startswith("Bearer"):
        issues.append(f"401 without WWW-Authenticate: Bearer (got {resp.headers.get('WWW-Authenticate')!r})")
    return issues


def success_issues(resp: requests.Response, status: int = 200) -> list[str]:
    issues: list[str] = []
    if resp.status_code != status:
        issues.append(f"status {resp.status_code}, expected {status}")
    try:
        body = resp.json()
        if not isinstance(body, dict) or body.get("ok") is not True:
            issues.append("body has no ok=true")
    except ValueError:
        issues.append("body is not JSON")
    rid = resp.headers.get("X-Request-Id")
    if not rid or not REQUEST_ID_RE.match(rid):
        issues.append(f"X-Request-Id header {rid!r} missing or not sane")
    return issues


def expect(resp: requests.Response, status: int, what: str) -> dict:
    """The JSON body of a set-up request that must answer `status`, else SetupError."""
    if resp.status_code != status:
        raise SetupError(f"{what}: expected {status}\n    {describe(resp)}")
    try:
        return resp.json()
    except ValueError:
        raise SetupError(f"{what}: body is not JSON\n    {describe(resp)}")


def unique_email(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}@example.ec"


def random_ruc() -> str:
    return "".join(random.choice("0123456789") for _ in range(10)) + "001"


def sign_up(api: Api, *, email: str | None = None, name: str = "Hostile Test S.A.") -> tuple[dict, str]:
    body = expect(api.post("/v1/tenants", json_body={"email": email or unique_email(), "name": name}), 201, "sign-up")
    return body["tenant"], body["apiKey"]


def admin_verify(api: Api, admin_token: str, tenant_id: int) -> dict:
    return expect(api.post(f"/admin/v1/tenants/{tenant_id}/verify-email", key=admin_token), 200, "admin verify-email")["tenant"]


def new_tenant(api: Api, admin_token: str, *, verified: bool = True, name: str = "Test S.A.") -> dict:
    tenant, key = sign_up(api, name=name)
    if verified:
        admin_verify(api, admin_token, tenant["id"])
    return {"id": tenant["id"], "key": key, "tenant": tenant}


def new_issuer(api: Api, key: str, **fields: Any) -> dict:
    body = {"ruc": random_ruc(), "legalName": "Emisor de prueba", "establishment": "001", "emissionPoint": "001"}
    body.update(fields)
    return expect(api.post("/v1/issuers", key=key, json_body=body), 201, "create issuer")["issuer"]


def list_keys(api: Api, key: str) -> list[dict]:
    return expect(api.get("/v1/keys", key=key), 200, "list keys")["keys"]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_healthy(base: str, seconds: float = 30.0, path: str = "/healthz") -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(base + path, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


_STARTED_SERVERS: list["ServerProcess"] = []


def _stop_started_servers() -> None:
    for server in _STARTED_SERVERS:
        try:
            server.kill(signal.SIGTERM)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_stop_started_servers)


class ServerProcess:
    """A `comprobify serve` started by these scripts (never the harness's own);
    stopped at exit at the latest, by its own pid."""

    def __init__(self, binary: str, database_url: str, admin_token: str, *, log_path: str,
                 extra_env: dict[str, str] | None = None, command_prefix: list[str] | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        environment = dict(os.environ)
        environment.update({
            "DATABASE_URL": database_url, "HOST": "127.0.0.1", "PORT": str(self.port),
            "SIGNUP_RATE_LIMIT": "0", "COMPROBIFY_ADMIN_TOKEN": admin_token, "LOG_LEVEL": "warning",
        })
        environment.update(extra_env or {})
        self.log_path = log_path
        self.log = open(log_path, "ab")
        for attempt in range(60):
            try:
                self.proc = subprocess.Popen([*(command_prefix or []), binary, "serve"], cwd=REPO_ROOT, env=environment,
                                             stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
                break
            except OSError as error:  # ETXTBSY: the binary is being rewritten by a build right now
                if error.errno != 26 or attempt == 59:
                    self.log.close()
                    raise SetupError(f"cannot start {binary}: {error}")
                time.sleep(1)
        _STARTED_SERVERS.append(self)
        if not wait_healthy(self.base, 60):
            self.kill()
            raise SetupError(f"the server on port {self.port} did not become healthy; see {log_path}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def psql(url: str, sql: str, timeout: float = 60.0) -> list[list[str]]:
    """Rows of `sql` run with psql as the given role; fields split on \\x1f."""
    out = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
        capture_output=True, text=True, timeout=timeout,
    )
    if out.returncode != 0:
        raise SetupError(f"psql failed: {out.stderr.strip()}\n    SQL: {sql}")
    return [line.split("\x1f") for line in out.stdout.splitlines() if line != ""]


# ---------------------------------------------------------------- comprobantes (SRI.md)

TEST_P12_PASSWORD = "clave-de-prueba"
HEAD_OFFICE = "Av. Amazonas N34-451, Quito"
_CERTIFICATE: dict[str, str] | None = None


def test_certificate() -> dict[str, str]:
    """A signing certificate for every issuer of this run, made once with the
    openssl CLI: a throwaway CA and a 2048-bit RSA leaf it signs (keyUsage
    digitalSignature, nonRepudiation), exported with `openssl pkcs12 -export`.
    Returns {"p12": base64 of the file, "password": ..., "dir": the folder}."""
    global _CERTIFICATE
    if _CERTIFICATE is not None:
        return _CERTIFICATE
    import base64
    import tempfile
    folder = tempfile.mkdtemp(prefix="comprobify-pki.")
    atexit.register(lambda: subprocess.run(["rm", "-rf", folder], check=False))

    def openssl(*args: str) -> None:
        out = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise SetupError(f"openssl {' '.join(args)}: {out.stderr.strip()}")

    with open(os.path.join(folder, "leaf.ext"), "w", encoding="utf-8") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
            "-subj", "/C=EC/O=Autoridad de Pruebas/CN=Comprobify Script CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
            "-subj", "/C=EC/O=Empresa de Pruebas S.A./CN=Firma de Pruebas")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "30", "-sha256", "-extfile", "leaf.ext", "-out", "leaf.pem")
    openssl("pkcs12", "-export", "-inkey", "leaf.key", "-in", "leaf.pem", "-certfile", "ca.pem",
            "-passout", f"pass:{TEST_P12_PASSWORD}", "-out", "leaf.p12")
    with open(os.path.join(folder, "leaf.p12"), "rb") as f:
        p12 = base64.b64encode(f.read()).decode("ascii")
    _CERTIFICATE = {"p12": p12, "password": TEST_P12_PASSWORD, "dir": folder}
    return _CERTIFICATE


def upload_certificate(api: Api, key: str, issuer_id: int) -> dict:
    """PUT /v1/issuers/:id/certificate with the run's test certificate."""
    cert = test_certificate()
    body = {"p12": cert["p12"], "password": cert["password"]}
    return expect(api.request("PUT", f"/v1/issuers/{issuer_id}/certificate", key=key, json_body=body), 200,
                  "upload certificate")["certificate"]


def new_signing_issuer(api: Api, key: str, **fields: Any) -> dict:
    """An issuer that can issue: with headOfficeAddress and the run's certificate."""
    fields.setdefault("headOfficeAddress", HEAD_OFFICE)
    issuer = new_issuer(api, key, **fields)
    upload_certificate(api, key, issuer["id"])
    return issuer


def factura_body(metadata: dict | None = None, **extra: Any) -> dict:
    """A valid factura (SRI.md): one line of 2 x 10.75 less 0.50 at 15 % IVA for a
    final consumer; subtotal 21.00, IVA 3.15, total 24.15."""
    body: dict[str, Any] = {
        "documentType": "01",
        "buyer": {"idType": "07", "id": "9999999999999", "name": "CONSUMIDOR FINAL"},
        "items": [{"code": "A-1", "description": "Widget", "quantity": "2", "unitPrice": "10.75", "discount": "0.50",
                   "taxes": [{"code": "2", "rateCode": "4"}]}],
        "payments": [{"method": "01", "total": "24.15"}],
    }
    if metadata is not None:
        body["metadata"] = metadata
    body.update(extra)
    return body


def credit_note_body(metadata: dict | None = None, number: str = "999-999-000000123",
                     factura_date: str = "2025-12-01", **extra: Any) -> dict:
    """A valid credit note of 11.50 against a factura issued before Comprobify
    (an unknown number is taken as given). The default number is of a branch
    (999-999) the scripts never create, so no factura issued here can take it."""
    body: dict[str, Any] = {
        "documentType": "04",
        "buyer": {"idType": "05", "id": "1712345678", "name": "José Núñez"},
        "items": [{"description": "Devolución", "quantity": "1", "unitPrice": "10.00",
                   "taxes": [{"code": "2", "rateCode": "4"}]}],
        "modifiedDocument": {"documentType": "01", "number": number, "issueDate": factura_date},
        "reason": "Devolución",
    }
    if metadata is not None:
        body["metadata"] = metadata
    body.update(extra)
    return body


def document_body(document_type: str, metadata: dict | None = None) -> dict:
    """A valid body for an issuable type ("01" or "04")."""
    return credit_note_body(metadata) if document_type == "04" else factura_body(metadata)
