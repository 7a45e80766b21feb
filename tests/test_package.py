"""The installable package: the PyInstaller build, installed by the real plakar, no Python.

The .ptar is what ``make package`` makes (tools/plugin_package.py): built once
per session, and only when its inputs changed since the build cached in
dist/. Every plakar here runs with PATH=/nonexistent, so the connectors can
only work if the package is self-contained. Select with ``-m package``.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from azurite import ACCOUNT, KEY, Azurite, start_azurite
from plakar_env import PlakarEnv, output, plakar_bin, snapshot_id
from stdio_plugin import StdioPlugin
from tree_compare import make_sample_tree, snapshot

from kloset_sdk._proto import importer_pb2 as ipb
from kloset_sdk._proto import importer_pb2_grpc as ipb_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import plugin_package  # noqa: E402

pytestmark = [pytest.mark.package, pytest.mark.plakar, pytest.mark.azurite]

TIMEOUT = 180
NO_PATH = "/nonexistent"
MiB = 1024 * 1024


# -- fixtures --

@pytest.fixture(scope="session")
def ptar() -> Path:
    """dist/azblob_vX.Y.Z_OS_ARCH.ptar, (re)built if its inputs changed."""
    plugin_package.build()
    return plugin_package.package(plakar_bin(), reuse=True)


@pytest.fixture
def nopy() -> Iterator[PlakarEnv]:
    """A private plakar whose PATH holds no program at all (so no Python)."""
    env = PlakarEnv(extra_env={"PATH": NO_PATH})
    try:
        yield env
    finally:
        env.stop()


def pk(env: PlakarEnv, *args: str, ok: bool = True) -> CompletedProcess[str]:
    return env.run(*args, ok=ok, timeout=TIMEOUT)




def installed(env: PlakarEnv) -> list[str]:
    return re.findall(r"\bazblob@(v\S+)", pk(env, "pkg", "show").stdout)


def extracted(env: PlakarEnv) -> list[str]:
    """Names of the installed package folders plakar extracted."""
    return sorted(p.name for p in env.cache.glob("plakar/plugins/*/azblob_*"))


def new_container(service: BlobServiceClient, kind: str) -> ContainerClient:
    return service.create_container(f"{kind}-{uuid.uuid4().hex[:10]}")


SAMPLE = {
    "top.txt": b"at the top\n",
    "empty.bin": b"",
    "docs/readme.md": b"# nested\n",
    "docs/deep/er/data.bin": os.urandom(3 * MiB + 5),
    "photos/2024/été #1.txt": b"summer",
}


def fill(container: ContainerClient) -> None:
    for name, data in SAMPLE.items():
        container.upload_blob(name, data, metadata={"origin": "plakar-azblob-tests"},
                              content_settings=ContentSettings(content_type="text/plain"))


def blobs(container: ContainerClient) -> dict[str, bytes]:
    return {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file()}


def backup_and_check(env: PlakarEnv, source: str, expected: dict[str, bytes],
                     tmp: Path) -> None:
    """backup @source into a local store, restore it locally, compare bytes."""
    store = str(tmp / f"store-{uuid.uuid4().hex[:6]}")
    pk(env, "at", store, "create")
    snap = snapshot_id(pk(env, "at", store, "backup", f"@{source}"))
    restored = tmp / f"restored-{snap}"
    pk(env, "at", store, "restore", "-to", str(restored), snap)
    assert files(restored) == expected


def next_version(version: str) -> str:
    major, minor, patch = version[1:].split("-")[0].split(".")
    return f"v{major}.{minor}.{int(patch) + 1}"


# -- the package --

def test_build_layout_and_manifest(ptar: Path) -> None:
    plugin = plugin_package.PLUGIN
    ver = plugin_package.version()
    assert ptar.name.startswith(f"azblob_{ver}_") and ptar.parent == plugin_package.DIST
    manifest = (plugin / "manifest.yaml").read_text()
    listed = re.findall(r'^      - "(.+)"$', manifest, re.MULTILINE)
    assert listed == plugin_package.runtime_files(plugin) and listed
    assert all((plugin / f).is_file() for f in listed)
    assert manifest.count("extra_files:") == 1
    assert all(f"args: [{kind}]" in manifest for kind in plugin_package.ROLES)
    assert os.access(plugin / "plakar-azblob", os.X_OK)
    for role in plugin_package.ROLES:
        assert (plugin / "schemas" / f"{role}.json").read_bytes() == \
            (plugin_package.SCHEMAS / f"{role}.json").read_bytes()
    # Lean: none of the development tools came along.
    names = "\n".join(listed)
    for unwanted in ("grpc_tools", "setuptools", "pip/", "_pytest", "mypy", "PyInstaller/"):
        assert unwanted not in names


def test_no_python_on_the_path(nopy: PlakarEnv) -> None:
    for probe in (["/bin/sh", "-c", "command -v python3 || command -v python"],
                  ["/usr/bin/which", "python3"]):
        proc = subprocess.run(probe, env=nopy.env, capture_output=True, text=True)
        assert proc.returncode != 0 and not proc.stdout.strip(), proc.stdout


def test_source_store_and_destination_without_python(
    nopy: PlakarEnv, ptar: Path, azurite: Azurite, tmp_path: Path
) -> None:
    pk(nopy, "pkg", "add", str(ptar))
    assert installed(nopy) == [plugin_package.version()]
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    cs = f"connection_string={azurite.connection_string}"

    # source: a container with nested prefixes and metadata
    src = new_container(service, "src")
    fill(src)
    pk(nopy, "source", "add", "src", f"azblob://{src.container_name}", cs)
    backup_and_check(nopy, "src", SAMPLE, tmp_path)

    # storage: a Kloset store in a container
    sample = tmp_path / "sample"
    sample.mkdir()
    make_sample_tree(sample)
    kstore = new_container(service, "kstore").container_name
    pk(nopy, "store", "add", "az", f"azblob://{kstore}/kloset", cs)
    pk(nopy, "at", "@az", "create")
    snap = snapshot_id(pk(nopy, "at", "@az", "backup", str(sample)))
    assert "check completed without errors" in output(pk(nopy, "at", "@az", "check"))
    pk(nopy, "at", "@az", "restore", "-to", str(tmp_path / "from-az"), snap)
    assert snapshot(tmp_path / "from-az") == snapshot(sample)
    names = [b.name for b in service.get_container_client(kstore).list_blobs()]
    assert "kloset/CONFIG" in names and any(n.startswith("kloset/packfiles/") for n in names)

    # destination: the source backup restored into another container
    store = str(tmp_path / "local")
    pk(nopy, "at", store, "create")
    snap = snapshot_id(pk(nopy, "at", store, "backup", "@src"))
    dst = new_container(service, "dst")
    pk(nopy, "destination", "add", "dst", f"azblob://{dst.container_name}", cs)
    pk(nopy, "at", store, "restore", "-to", "@dst", snap)
    assert blobs(dst) == SAMPLE


def test_remove_then_add_again(nopy: PlakarEnv, ptar: Path, azurite: Azurite,
                               tmp_path: Path) -> None:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    src = new_container(service, "again")
    fill(src)
    pk(nopy, "pkg", "add", str(ptar))
    pk(nopy, "source", "add", "src", f"azblob://{src.container_name}",
       f"connection_string={azurite.connection_string}")
    backup_and_check(nopy, "src", SAMPLE, tmp_path)

    pk(nopy, "pkg", "rm", "azblob")
    assert installed(nopy) == [] and extracted(nopy) == []
    store = str(tmp_path / "nothing")
    pk(nopy, "at", store, "create")
    assert pk(nopy, "at", store, "backup", "@src", ok=False).returncode != 0

    pk(nopy, "pkg", "add", str(ptar))
    assert installed(nopy) == [plugin_package.version()]
    backup_and_check(nopy, "src", SAMPLE, tmp_path)


def test_upgrade_with_pkg_add_u(nopy: PlakarEnv, ptar: Path, azurite: Azurite,
                                tmp_path: Path) -> None:
    old = plugin_package.version()
    new = next_version(old)
    newer = plugin_package.package(plakar_bin(), new, tmp_path)
    assert newer.name == ptar.name.replace(f"_{old}_", f"_{new}_")

    pk(nopy, "pkg", "add", str(ptar))
    refused = pk(nopy, "pkg", "add", str(newer), ok=False)
    assert refused.returncode != 0 and "already installed" in output(refused)
    pk(nopy, "pkg", "add", "-u", str(newer))
    assert installed(nopy) == [new]
    assert extracted(nopy) == [newer.name.removesuffix(".ptar")]
    # -u never downgrades: the older package is skipped
    pk(nopy, "pkg", "add", "-u", str(ptar))
    assert installed(nopy) == [new]

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    src = new_container(service, "upgraded")
    fill(src)
    pk(nopy, "source", "add", "src", f"azblob://{src.container_name}",
       f"connection_string={azurite.connection_string}")
    backup_and_check(nopy, "src", SAMPLE, tmp_path)


# -- Microsoft Entra ID in the packaged build: azure.identity must be bundled --

def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
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
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


class _TokenService(ThreadingHTTPServer):
    """The App Service managed-identity endpoint (IDENTITY_ENDPOINT), faked."""

    secret = uuid.uuid4().hex
    served = 0


class _TokenHandler(BaseHTTPRequestHandler):
    server: _TokenService

    def do_GET(self) -> None:
        if self.headers.get("X-IDENTITY-HEADER") != self.server.secret:
            self.send_error(401)
            return
        now = int(time.time())
        token = _jwt({"aud": "https://storage.azure.com", "iat": now - 60, "nbf": now - 60,
                      "exp": now + 3600, "iss": f"https://sts.windows.net/{uuid.uuid4()}/",
                      "oid": str(uuid.uuid4()), "tid": str(uuid.uuid4())})
        body = json.dumps({"access_token": token, "expires_on": str(now + 3600),
                           "resource": "https://storage.azure.com",
                           "token_type": "Bearer"}).encode()
        self.server.served += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _https_azurite(cert: Path, key: Path) -> Azurite:
    """An Azurite serving https with OAuth (bearer tokens) enabled."""
    return start_azurite(extra_args=["--oauth", "basic", "--cert", str(cert), "--key", str(key)])


def test_entra_id_managed_identity_in_the_packaged_build(
    ptar: Path, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    azurite = _https_azurite(cert, key)
    tokens = _TokenService(("127.0.0.1", 0), _TokenHandler)
    threading.Thread(target=tokens.serve_forever, daemon=True).start()
    endpoint = f"https://127.0.0.1:{azurite.port}/{ACCOUNT}"
    env = PlakarEnv(extra_env={
        "PATH": NO_PATH,
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{tokens.server_address[1]}/msi/token",
        "IDENTITY_HEADER": tokens.secret,
        "REQUESTS_CA_BUNDLE": str(cert),
    })
    try:
        service = BlobServiceClient(endpoint, credential={"account_name": ACCOUNT,
                                                          "account_key": KEY},
                                    connection_verify=str(cert))
        src = new_container(service, "entra")
        fill(src)
        pk(env, "pkg", "add", str(ptar))
        # No key, SAS nor connection string: Microsoft Entra ID, through
        # DefaultAzureCredential's managed identity.
        pk(env, "source", "add", "src", f"azblob://{src.container_name}",
           f"account_name={ACCOUNT}", f"endpoint={endpoint}")
        backup_and_check(env, "src", SAMPLE, tmp_path)
        assert tokens.served > 0
    finally:
        tokens.shutdown()
        env.stop()
        azurite.stop()


# -- cold path: azure.identity is loaded only when Entra ID is used --

def test_importer_cold_path_does_not_import_azure_identity() -> None:
    """``python -X importtime``: spawn the importer, Init it, exit; list what it imported."""
    plugin = StdioPlugin([sys.executable, "-X", "importtime", "-m", "plakar_azblob",
                          "importer"])
    try:
        cs = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
              "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;")
        ipb_grpc.ImporterStub(plugin.channel).Init(  # type: ignore[no-untyped-call]
            ipb.InitRequest(proto="azblob", config={"location": "azblob://cold",
                                                    "connection_string": cs}),
            timeout=60, wait_for_ready=True)
    finally:
        plugin.close_stdin()
    imported = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", plugin.stderr,
                          re.MULTILINE)
    assert "plakar_azblob.source" in imported and "azure.storage.blob" in imported
    assert not [m for m in imported if m.startswith(("azure.identity", "msal"))]
