"""Azurite over https with OAuth, and a Microsoft Entra ID token service, for tests and benches.

Microsoft Entra ID needs https: :func:`https_azurite` starts Azurite with a
certificate for 127.0.0.1 (:func:`self_signed`, its own CA) and bearer tokens
enabled (``--oauth basic``: the token's claims are checked, not its
signature). :class:`TokenService` plays the App Service managed-identity
endpoint that ``DefaultAzureCredential`` asks when ``IDENTITY_ENDPOINT`` and
``IDENTITY_HEADER`` are set (:attr:`TokenService.env`), and counts the
tokens it hands out. :func:`ca_directory` makes a folder of hashed CA
certificates (OpenSSL's ``-CApath`` layout), as ``REQUESTS_CA_BUNDLE`` may name.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import shutil
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from azurite import Azurite, start_azurite


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def https_azurite(cert: Path, key: Path) -> Azurite:
    """An Azurite serving https with OAuth (bearer tokens) enabled."""
    return start_azurite(extra_args=["--oauth", "basic", "--cert", str(cert), "--key", str(key)])


def ca_directory(cert: Path, folder: Path) -> Path | None:
    """``folder`` holding ``cert`` under its OpenSSL subject hash (``HASH.0``), or None
    without the openssl command (the hash is OpenSSL's own)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    digest = subprocess.run([openssl, "x509", "-hash", "-noout", "-in", str(cert)],
                            capture_output=True, text=True, check=True, timeout=30).stdout
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(cert, folder / f"{digest.strip()}.0")
    return folder


def jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


class _Handler(BaseHTTPRequestHandler):
    server: TokenService

    def do_GET(self) -> None:
        if self.headers.get("X-IDENTITY-HEADER") != self.server.secret:
            self.send_error(401)
            return
        now = int(time.time())
        token = jwt({"aud": "https://storage.azure.com", "iat": now - 60, "nbf": now - 60,
                     "exp": now + 3600, "iss": f"https://sts.windows.net/{uuid.uuid4()}/",
                     "oid": str(uuid.uuid4()), "tid": str(uuid.uuid4())})
        body = json.dumps({"access_token": token, "expires_on": str(now + 3600),
                           "resource": "https://storage.azure.com",
                           "token_type": "Bearer"}).encode()
        with self.server.lock:
            self.server.served += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class TokenService(ThreadingHTTPServer):
    """The App Service managed-identity endpoint (``IDENTITY_ENDPOINT``), faked, serving
    in a thread: ``with TokenService() as tokens: ... tokens.env ... tokens.served``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.secret = uuid.uuid4().hex
        self.served = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True, name="token-service").start()

    @property
    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": f"http://127.0.0.1:{self.server_address[1]}/msi/token",
                "IDENTITY_HEADER": self.secret}

    def __exit__(self, *args: object) -> None:
        self.shutdown()
        super().__exit__(*args)
