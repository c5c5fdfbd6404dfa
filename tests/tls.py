"""A throw-away self-signed TLS certificate for loopback servers in tests (openssl CLI)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def self_signed_cert(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """(certificate, private key) PEM files for ``127.0.0.1``/``localhost``, valid for 2 days.

    The certificate is its own CA: pass it as the CA file to clients that must trust it.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
    args += ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    args += ["-keyout", str(key), "-out", str(cert)]
    subprocess.run([openssl, *args], check=True, capture_output=True)
    return cert, key
