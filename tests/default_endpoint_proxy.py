"""Stand in for ``https://ACCOUNT.blob.core.windows.net``: an HTTPS proxy onto Azurite.

A connector configured without ``endpoint`` (and without a connection
string) talks to the account's public URL. To run such configurations
against Azurite, the connector's environment gets ``HTTPS_PROXY`` pointing
here and a private CA (``SSL_CERT_FILE`` for Go, ``REQUESTS_CA_BUNDLE`` for
Python's requests): this proxy answers ``CONNECT host:443``, records the
host, terminates TLS with a certificate for that host signed by the private
CA, and relays the plain HTTP to Azurite. Azurite takes the account from the
host name (``devstoreaccount1.blob.core.windows.net``), as Azure does.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_ca_and_leaf(folder: Path, host: str) -> tuple[Path, Path, Path]:
    """A CA certificate, and a certificate + key for ``host`` signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("plakar-azblob test CA"))
          .issuer_name(_name("plakar-azblob test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name(host)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(leaf.public_bytes(pem))
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


def _relay(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(1 << 16):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class DefaultEndpointProxy:
    """``with DefaultEndpointProxy(folder, host, azurite_port) as p``: ``p.env`` for the
    connectors; ``p.connects`` lists every ``CONNECT`` target seen, in order."""

    def __init__(self, folder: Path, host: str, azurite_port: int) -> None:
        self.host = host
        self.azurite_port = azurite_port
        self.ca_file, cert, key = _write_ca_and_leaf(folder, host)
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.connects: list[str] = []
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def env(self) -> dict[str, str]:
        url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        return {"HTTPS_PROXY": url, "https_proxy": url, "SSL_CERT_FILE": str(self.ca_file),
                "REQUESTS_CA_BUNDLE": str(self.ca_file)}

    def __enter__(self) -> DefaultEndpointProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(4096)
            if not data:
                conn.close()
                return
            head += data
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        target = line.split()[1] if line.startswith("CONNECT ") else line
        with self._lock:
            self.connects.append(target)
        if target != f"{self.host}:443":
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            tls = self._tls.wrap_socket(conn, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self.azurite_port))
        except OSError:
            conn.close()
            return
        with self._lock:
            self._sockets += [tls, upstream]
        threading.Thread(target=_relay, args=(upstream, tls), daemon=True).start()
        _relay(tls, upstream)
