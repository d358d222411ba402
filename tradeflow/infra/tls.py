"""A throwaway test PKI: a CA and certificates signed by it, made with the JDK's keytool.

The secured servers (``KafkaBroker(secure=True)``, later the FIX venue) need a
certificate their clients can verify. Nothing is checked in: ``TestPki(directory)``
generates a fresh CA at start, valid for two days, and signs server and client
certificates with it. Java servers read the PKCS12 stores; librdkafka and Python's
``ssl`` read the CA as PEM (``ca_pem``). Every store has the same random password
(``password``), kept only in memory and handed to servers through files with mode 0600.

keytool ships with the JDK the servers need anyway. Python's ``ssl`` reads a private
key only as PEM, so ``pem_key`` (a client certificate for Python) uses ``openssl``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tradeflow.infra.common import InfraError, java_bin

VALIDITY_DAYS = "2"


def _keytool() -> str:
    java = Path(java_bin())
    tool = java.with_name("keytool")
    if tool.exists():
        return str(tool)
    found = shutil.which("keytool")
    if found is None:
        raise InfraError("keytool (from the JDK) is not on PATH; it makes the test certificates")
    return found


@dataclass(frozen=True)
class KeyStore:
    """A PKCS12 store holding one key and its certificate chain (CA-signed)."""

    path: Path
    cert_pem: Path
    alias: str
    dn: str


class TestPki:
    """A CA under ``directory`` (created), and stores signed by it on demand."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        self.password = secrets.token_urlsafe(18)
        self._keytool = _keytool()
        self.ca_store = self.directory / "ca.p12"
        self.ca_pem = self.directory / "ca.pem"
        self.truststore = self.directory / "truststore.p12"
        self._run("-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048",
                  "-dname", "CN=tradeflow test CA", "-ext", "bc:c", "-validity", VALIDITY_DAYS,
                  "-keystore", str(self.ca_store), "-storetype", "PKCS12", *self._passwords())
        self._run("-exportcert", "-rfc", "-alias", "ca", "-keystore", str(self.ca_store),
                  "-storepass", self.password, "-file", str(self.ca_pem))
        self._run("-importcert", "-noprompt", "-alias", "ca", "-file", str(self.ca_pem),
                  "-keystore", str(self.truststore), "-storetype", "PKCS12",
                  "-storepass", self.password)

    def _passwords(self) -> list[str]:
        return ["-storepass", self.password, "-keypass", self.password]

    def _run(self, *args: str) -> None:
        proc = subprocess.run(  # noqa: S603 - the JDK's keytool with our own arguments
            [self._keytool, *args], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            # keytool's output never contains the store password.
            raise InfraError(f"keytool {args[0]} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    def issue(
        self, name: str, cn: str, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
        ca: TestPki | None = None,
    ) -> KeyStore:
        """Return ``<name>.p12``: a new key with a certificate for ``hosts`` (server and client use).

        ``ca`` signs it instead of this PKI's CA (a certificate a client must refuse).
        """
        signer = ca or self
        store = self.directory / f"{name}.p12"
        csr = self.directory / f"{name}.csr"
        cert = self.directory / f"{name}.pem"
        dn = f"CN={cn}"
        self._run("-genkeypair", "-alias", name, "-keyalg", "RSA", "-keysize", "2048",
                  "-dname", dn, "-validity", VALIDITY_DAYS, "-keystore", str(store),
                  "-storetype", "PKCS12", *self._passwords())
        self._run("-certreq", "-alias", name, "-keystore", str(store),
                  "-storepass", self.password, "-file", str(csr))
        sans = ",".join(f"ip:{h}" if h[0].isdigit() else f"dns:{h}" for h in hosts)
        signer._run("-gencert", "-rfc", "-alias", "ca", "-keystore", str(signer.ca_store),
                    "-storepass", signer.password, "-infile", str(csr), "-outfile", str(cert),
                    "-validity", VALIDITY_DAYS, "-ext", f"SAN={sans}",
                    "-ext", "EKU=serverAuth,clientAuth")
        self._run("-importcert", "-noprompt", "-alias", "ca", "-file", str(signer.ca_pem),
                  "-keystore", str(store), "-storepass", self.password)
        self._run("-importcert", "-noprompt", "-alias", name, "-file", str(cert),
                  "-keystore", str(store), "-storepass", self.password)
        csr.unlink()
        return KeyStore(store, cert, name, dn)

    def pem_key(self, store: KeyStore) -> Path:
        """Return ``<alias>.key``: the store's private key as unencrypted PEM (mode 0600).

        For a Python client presenting ``store.cert_pem``; needs ``openssl``.
        """
        openssl = shutil.which("openssl")
        if openssl is None:
            raise InfraError("openssl is not on PATH; it turns a test key into PEM for Python's ssl")
        key = self.directory / f"{store.alias}.key"
        key.unlink(missing_ok=True)
        os.close(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        proc = subprocess.run(  # noqa: S603 - openssl with our own arguments
            [openssl, "pkcs12", "-in", str(store.path), "-nocerts", "-nodes",
             "-passin", "env:TF_PKI_PASSWORD", "-out", str(key)],
            capture_output=True, text=True, check=False, env={**os.environ, "TF_PKI_PASSWORD": self.password},
        )
        if proc.returncode != 0:
            raise InfraError(f"openssl pkcs12 failed: {proc.stderr[-2000:]}")
        return key
