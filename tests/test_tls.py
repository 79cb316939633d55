"""The index process over TLS (--certfile/--keyfile) with a CA made here: twine uploads, pip and uv
install, each trusting only that CA; a client without it is refused."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PASSWORD, USER, free_port, pip_env
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from wheelmaker import make_wheel

from jetwheel.index.server.config import add_user


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca_and_cert(dest: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for 127.0.0.1 and localhost, server key), as PEM files."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("jetwheel test CA"))
        .issuer_name(_name("jetwheel test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = dest / "ca.pem", dest / "server.pem", dest / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca, cert, key = make_ca_and_cert(tmp_path)
    htpasswd = tmp_path / "htpasswd"
    add_user(htpasswd, USER, PASSWORD)
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "jetwheel", "index.serve", "--root", str(tmp_path / "packages")),
            *("--port", str(port), "--host", "127.0.0.1", "--htpasswd", str(htpasswd), "--upstream", ""),
            *("--workers", "1", "--certfile", str(cert), "--keyfile", str(key)),
        ]
    )
    url = f"https://127.0.0.1:{port}"
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2, context=ctx).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.2)
    yield url, ca
    proc.terminate()
    proc.wait(10)


def test_twine_pip_and_uv_over_tls_trusting_only_the_test_ca(tls_server: tuple[str, Path], tmp_path: Path) -> None:
    url, ca = tls_server
    wheel = make_wheel(tmp_path, "tls-pkg", "1.0")
    # as on a machine without this one's CA overrides (requests lets REQUESTS_CA_BUNDLE beat --cert)
    drop = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {k: v for k, v in {**pip_env(), "TWINE_NON_INTERACTIVE": "1"}.items() if k not in drop}
    up = subprocess.run(
        [
            *(sys.executable, "-m", "twine", "upload", "--repository-url", f"{url}/", "--cert", str(ca)),
            *("-u", USER, "-p", PASSWORD, "--disable-progress-bar", str(wheel)),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp_path / "d"), "--index-url"]
    refused = subprocess.run([*pip, f"{url}/simple/", "tls-pkg"], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr
    got = subprocess.run(
        [*pip, f"{url}/simple/", "--cert", str(ca), "tls-pkg"], capture_output=True, text=True, env=env
    )
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "d" / wheel.name).read_bytes() == wheel.read_bytes()
    uv = subprocess.run(
        [
            *("uv", "pip", "install", "--no-cache", "--target", str(tmp_path / "uv"), "--python", sys.executable),
            *("--index-url", f"{url}/simple/", "tls-pkg"),
        ],
        capture_output=True,
        text=True,
        env={**env, "SSL_CERT_FILE": str(ca), "UV_NO_CONFIG": "1"},
    )
    assert uv.returncode == 0, uv.stderr
    assert (tmp_path / "uv" / "tls_pkg" / "__init__.py").is_file()
