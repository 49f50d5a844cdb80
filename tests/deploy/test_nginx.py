"""nginx/nginx.conf run for real: the API served by ``fwa serve`` on a loopback port (SQLite) and
nginx in front of it with a self-signed certificate, spoken to over HTTPS.

The config is the repository's, rewritten only where the test machine differs from the compose
network (``REWRITES``: the two listen ports and the upstream address); everything else, the
security headers, body limits, error pages and locations, is what production runs."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine

from fwa_api.uploads.spool import request_limit
from fwa_pipeline.settings import Settings
from tests.agents.fake_llm import MODEL, FakeLLM, Say
from tests.api.conftest import bearer, free_port, make_token, make_workspace
from tests.pipeline import batch
from tests.processes import stop_process

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason=".ci/run installs nginx")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "nginx" / "nginx.conf"
FWA = Path(sys.executable).with_name("fwa")
WORKSPACE = "acme"
MIB = 1024 * 1024
# The API under test has the default upload limit: its environment sets no FWA_MAX_UPLOAD_MB.
MAX_FILE_BYTES = Settings.model_fields["max_upload_mb"].default * MIB
START_TIMEOUT_S = 60
# One process in the foreground: no daemon to lose track of, and no worker user that needs
# access to the test's directories.
NGINX = ("nginx", "-g", "daemon off; master_process off;")

SECURITY_HEADERS = (
    "strict-transport-security",
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
)


def rewrites(http_port: int, https_port: int, api_port: int) -> dict[str, str]:
    """Config line -> its replacement on this machine; each must occur exactly once."""
    return {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "set $api_upstream http://api:8000;": f"set $api_upstream http://127.0.0.1:{api_port};",
    }


def rewritten_config(http_port: int, https_port: int, api_port: int) -> str:
    text = CONFIG.read_text()
    for line, replacement in rewrites(http_port, https_port, api_port).items():
        assert text.count(line) == 1, f"nginx.conf no longer has exactly one {line!r}"
        text = text.replace(line, replacement)
    return text


def self_signed(certs: Path) -> Path:
    """A certificate for 127.0.0.1 in nginx's ``certs/fullchain.pem`` and ``privkey.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certs.mkdir()
    chain = certs / "fullchain.pem"
    chain.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (certs / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return chain


def wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}:\n{log.read_text()[-4000:]}")


@dataclass
class Proxy:
    url: str
    http_port: int
    https_port: int
    tls: ssl.SSLContext
    token: str
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.tls, timeout=120)

    def declared_post(
        self, path: str, length: int, request_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        """POST headers declaring a ``length``-byte multipart body, then wait for the answer
        without sending the body: limits on the declared length answer at once."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.https_port, context=self.tls, timeout=60
        )
        try:
            connection.putrequest("POST", path)
            connection.putheader("Authorization", f"Bearer {self.token}")
            connection.putheader("Content-Type", "multipart/form-data; boundary=fwa")
            connection.putheader("Content-Length", str(length))
            connection.putheader("X-Request-ID", request_id)
            connection.endheaders()
            response = connection.getresponse()
            headers = {name.lower(): value for name, value in response.getheaders()}
            return response.status, headers, response.read()
        finally:
            connection.close()


@pytest.fixture
def proxy(
    sqlite_url: str, sqlite_engine: Engine, tmp_path: Path
) -> Iterator[tuple[Proxy, FakeLLM]]:
    make_workspace(sqlite_engine, WORKSPACE)
    token = make_token(sqlite_engine, "investigator", WORKSPACE)
    api_port, http_port, https_port = free_port(), free_port(), free_port()
    home = tmp_path / "run"
    home.mkdir()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    chain = self_signed(prefix / "certs")
    (prefix / "nginx.conf").write_text(rewritten_config(http_port, https_port, api_port))

    started: list[subprocess.Popen[bytes]] = []
    with FakeLLM() as llm:
        try:
            env = {
                "PATH": os.environ["PATH"],
                "FWA_ENVIRONMENT": "test",
                "FWA_DATABASE_URL": sqlite_url,
                "FWA_DATA_DIR": str(home / "data"),
                "FWA_TRUSTED_PROXIES": "127.0.0.1",
                "FWA_OLLAMA_URL": llm.url,
                "FWA_OLLAMA_MODEL": MODEL,
                "DAGSTER_HOME": str(home / "dagster_home"),
            }
            api_log = home / "api.log"
            with api_log.open("wb") as out:
                api = subprocess.Popen(
                    [str(FWA), "serve", "--host", "127.0.0.1", "--port", str(api_port)],
                    cwd=home,  # no .env of the repository's
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append(api)
            wait_until_listening(api_port, api, api_log)
            nginx_log = prefix / "nginx.log"
            with nginx_log.open("wb") as out:
                nginx = subprocess.Popen(
                    [*NGINX, "-p", f"{prefix}/", "-c", "nginx.conf"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append(nginx)
            wait_until_listening(https_port, nginx, nginx_log)
            tls = ssl.create_default_context(cafile=str(chain))
            yield (
                Proxy(
                    f"https://127.0.0.1:{https_port}", http_port, https_port, tls, token, nginx_log
                ),
                llm,
            )
        finally:
            for process in reversed(started):
                stop_process(process)


def logged_statuses(log: Path, request_id: str) -> list[int]:
    """The statuses nginx's JSON access log gives for ``request_id``."""
    for _ in range(100):  # nginx writes the line once the connection is done: a bounded wait
        lines = log.read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.startswith('{"time"')]
        statuses = [entry["status"] for entry in entries if entry["request_id"] == request_id]
        if statuses:
            return statuses
        time.sleep(0.05)
    return []


def assert_security_headers(response: httpx.Response) -> None:
    for name in SECURITY_HEADERS:
        values = response.headers.get_list(name)
        assert len(values) == 1, f"{response.url.path}: {name} sent {len(values)} times"
    assert "max-age=" in response.headers["strict-transport-security"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]


def test_security_headers_on_plain_and_streaming_routes(proxy: tuple[Proxy, FakeLLM]) -> None:
    nginx, llm = proxy
    llm.script(Say(["Nothing ", "to report."]), Say(["Nothing to report."]))
    with nginx.client() as http:
        health = http.get("/api/health")
        assert health.status_code == 200
        assert_security_headers(health)

        # Both server-sent-event routes, answered by the API through their own location.
        query = {"workspace": WORKSPACE}
        with http.stream(
            "POST",
            "/api/agents/chat/stream",
            params=query,
            json={"message": "Anything odd this week?"},
            headers=bearer(nginx.token),
        ) as chat:
            assert chat.status_code == 200
            assert chat.headers["content-type"].startswith("text/event-stream")
            assert_security_headers(chat)
            assert any(line.startswith("data:") for line in chat.iter_lines())
        with http.stream(
            "POST", "/api/pipeline/run-stream", params=query, headers=bearer(nginx.token)
        ) as run:
            assert run.status_code == 200
            assert run.headers["content-type"].startswith("text/event-stream")
            assert_security_headers(run)
            first = next(line for line in run.iter_lines() if line.startswith("data:"))
            assert json.loads(first[5:])["type"] == "progress"

        # Responses nginx makes itself carry them too.
        hidden = http.get("/metrics")
        assert hidden.status_code == 404
        assert_security_headers(hidden)


def padded(path: Path, header: str, row: str, size: int) -> Path:
    """A CSV at ``path`` of ``header`` then rows ``row.format(n)`` for n = 0, 1, ... until it
    holds ``size`` bytes."""
    with path.open("w") as out:
        out.write(header + "\n")
        code = 0
        while out.tell() < size:
            out.write(row.format(code) + "\n")
            code += 1
    return path


def big_batch(directory: Path, each_bytes: int) -> list[tuple[str, Path]]:
    """A valid batch of about twice ``each_bytes``: two reference files padded with long (but
    contract-sized) descriptions, and claims that land without PHI."""
    files = batch.write({"medical_claims.csv": batch.batch_two()["medical_claims.csv"]}, directory)
    ndc = padded(
        directory / "ndc_reference.csv",
        "ndc_code,drug_name",
        "{:011d}," + "Long drug name " * 13,
        each_bytes,
    )
    cpt = padded(
        directory / "cpt_reference.csv",
        "cpt_code,description",
        "{:05d}," + "A long procedure description " * 10,
        each_bytes,
    )
    return [(path.name, path) for path in (ndc, cpt, files / "medical_claims.csv")]


def test_an_upload_within_the_api_limit_passes_nginx(
    proxy: tuple[Proxy, FakeLLM], tmp_path: Path
) -> None:
    nginx, _ = proxy
    # Over what one file may hold (nginx's limit before), well under the API's request limit.
    files = big_batch(tmp_path / "batch", 27 * MIB)
    assert sum(path.stat().st_size for _, path in files) > MAX_FILE_BYTES + MIB
    with nginx.client() as http, contextlib.ExitStack() as stack:
        parts = [("files", (name, stack.enter_context(path.open("rb")))) for name, path in files]
        response = http.post(
            "/api/uploads",
            params={"workspace": WORKSPACE},
            files=parts,
            headers=bearer(nginx.token),
        )
    assert response.status_code == 201, response.text[:500]
    assert response.json()["files"]["medical_claims.csv"] == 2


def test_an_oversize_upload_gets_a_json_413(proxy: tuple[Proxy, FakeLLM]) -> None:
    nginx, _ = proxy
    limit = request_limit(MAX_FILE_BYTES)
    path = f"/api/uploads?workspace={WORKSPACE}"

    # Over the API's limit: the API's own answer reaches the client.
    status, headers, body = nginx.declared_post(path, limit + 1, "over-the-api-limit")
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["detail"] == f"the upload is over {limit:,} bytes"
    assert json.loads(body)["request_id"] == "over-the-api-limit"

    # Far over it: nginx stops it at the door, in the API's shape.
    status, headers, body = nginx.declared_post(path, 4 * limit, "over-nginx-limit")
    assert status == 413
    assert headers["content-type"] == "application/json"
    refused = json.loads(body)
    assert set(refused) == {"detail", "problems", "request_id"}
    assert "too large" in refused["detail"]
    for name in SECURITY_HEADERS:
        assert name in headers
    # The id in the answer is the one nginx logs (and would have passed on).
    assert refused["request_id"] == "over-nginx-limit"
    assert logged_statuses(nginx.log, "over-nginx-limit") == [413]


def test_redirects_stay_on_https(proxy: tuple[Proxy, FakeLLM]) -> None:
    nginx, _ = proxy
    with nginx.client() as http:
        for path in ("/metrics/", "/api/health/"):
            response = http.get(path)
            if response.is_redirect:
                location = response.headers["location"]
                assert location.startswith(("/", "https://")), f"{path} -> {location}"
        plain = httpx.get(f"http://127.0.0.1:{nginx.http_port}/api/health")
        assert plain.status_code == 301
        assert plain.headers["location"].startswith("https://")
