"""The trust boundary on the broker: TLS files, SCRAM users, per-recipient ACLs, client files.

Principals: every recipient authenticates as `User:<recipient id>` (SCRAM-SHA-512 over TLS);
the pipeline's stages and commands as `User:threatroute.pipeline`; the broker's own
inter-broker client as `User:threatroute.broker`; the controller listener (loopback, SASL
PLAIN) as `User:_threatroute_controller`. None of the internal names can be a recipient id
(ids match `[a-z0-9][a-z0-9_-]*`: no dot, no leading underscore), so no registry entry can
ever claim the rights of the pipeline.

A recipient's ACLs (DESIGN.md, Kafka): READ on `alerts.<id>`, READ on consumer groups
prefixed `<id>.`, WRITE on `feedback.<id>` and `contributions.<id>`, nothing else. READ and
WRITE imply DESCRIBE in Kafka, so metadata shows a recipient its own topics and no others.

Secrets are generated here, written only to files of mode 0600, and never passed on a command
line or put in a message.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from threatroute import topics
from threatroute.errors import ThreatrouteError

PIPELINE_USER = "threatroute.pipeline"
BROKER_USER = "threatroute.broker"
CONTROLLER_USER = "_threatroute_controller"
MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192  # what kafka-configs uses for SCRAM-SHA-512 by default
CERT_DAYS = 825          # the longest validity TLS clients still accept for a leaf


class SecurityError(ThreatrouteError):
    """Credentials or ACLs could not be created, read or removed."""


def new_password() -> str:
    """256 random bits, URL-safe: no character needs quoting in JAAS or properties files."""
    return secrets.token_urlsafe(32)


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` readable by its owner only (created 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode on O_CREAT
        out.write(text)
    return path


def client_properties(bootstrap: str, username: str, password: str, ca_location: Path,
                      comment: str = "") -> str:
    """librdkafka client properties that `kcat -F FILE` and any librdkafka client take as
    they are."""
    lines = [f"# {line}" for line in comment.splitlines()] if comment else []
    lines += [f"bootstrap.servers={bootstrap}", "security.protocol=SASL_SSL",
              f"sasl.mechanisms={MECHANISM}", f"sasl.username={username}",
              f"sasl.password={password}", f"ssl.ca.location={ca_location}"]
    return "\n".join(lines) + "\n"


# -- TLS ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TlsFiles:
    """A local CA and the broker's certificate, PEM. `broker` holds the PKCS#8 key followed by
    the certificate chain: what Kafka's `ssl.keystore.type=PEM` reads. The key is not
    encrypted (the file is 0600, like a web server's key): Java 17 cannot read the PBES2
    encryption current tools write ("PBES2 SecretKeyFactory not available")."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def broker(self) -> Path:
        return self.folder / "broker.pem"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "threatroute (local)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def ensure_tls(folder: Path, hosts: Iterable[str] = ("127.0.0.1", "localhost")) -> TlsFiles:
    """Generate the local CA and broker certificate once; later calls keep them.

    A real deployment points the broker at its own CA and certificate instead ([broker]
    tls_ca, tls_keystore and, for an encrypted key, tls_key_password_file).
    """
    files = TlsFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    now = dt.datetime.now(dt.UTC)
    if not (files.ca.exists() and files.ca_key.exists()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (x509.CertificateBuilder().subject_name(_name("threatroute local CA"))
                   .issuer_name(_name("threatroute local CA"))
                   .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(
                       digital_signature=True, key_cert_sign=True, crl_sign=True,
                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                       key_agreement=False, encipher_only=False, decipher_only=False),
                       critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                                  critical=False)
                   .sign(ca_key, hashes.SHA256()))
        write_private(files.ca_key, ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode())
        files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        files.broker.unlink(missing_ok=True)  # a new CA: the old broker certificate is void
    if files.broker.exists():
        return files
    ca_cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
    loaded = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise SecurityError(f"{files.ca_key}: expected the EC key this tool generates")
    broker_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder().subject_name(_name("threatroute broker"))
            .issuer_name(ca_cert.subject).public_key(broker_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(loaded, hashes.SHA256()))
    key_pem = broker_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    write_private(files.broker, key_pem.decode() + cert.public_bytes(
        serialization.Encoding.PEM).decode() + files.ca.read_text())
    return files


# -- ACLs ---------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL as plain data: easy to compare with what the broker describes."""

    resource: str        # "topic" | "group"
    name: str
    pattern: str         # "literal" | "prefixed"
    operation: str       # "read" | "write"


def recipient_grants(recipient_id: str) -> tuple[Grant, ...]:
    """Exactly what a recipient may do; everything else the authorizer refuses."""
    return (
        Grant("topic", topics.alerts_topic(recipient_id), "literal", "read"),
        Grant("group", f"{recipient_id}.", "prefixed", "read"),
        Grant("topic", topics.feedback_topic(recipient_id), "literal", "write"),
        Grant("topic", topics.contributions_topic(recipient_id), "literal", "write"),
    )


_RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATIONS = {"read": AclOperation.READ, "write": AclOperation.WRITE,
               "describe": AclOperation.DESCRIBE}


def principal(recipient_id: str) -> str:
    return f"User:{recipient_id}"


def _binding(recipient_id: str, grant: Grant) -> AclBinding:
    return AclBinding(_RESOURCES[grant.resource], grant.name, _PATTERNS[grant.pattern],
                      principal(recipient_id), "*", _OPERATIONS[grant.operation],
                      AclPermissionType.ALLOW)


def _everything_of(recipient_id: str) -> AclBindingFilter:
    # None matches any resource name and host (the stubs say str; librdkafka takes NULL)
    return AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,  # type: ignore[arg-type]
                            principal(recipient_id), None, AclOperation.ANY,  # type: ignore[arg-type]
                            AclPermissionType.ANY)


def _result(future: object, what: str) -> object:
    try:
        return future.result(timeout=30)  # type: ignore[attr-defined]
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        raise SecurityError(f"{what}: {getattr(error, 'str', lambda: str(error))()}") from None


def granted(client: AdminClient, recipient_id: str) -> set[Grant]:
    """The ACLs the broker holds for this recipient, as Grants."""
    bindings = _result(client.describe_acls(_everything_of(recipient_id), request_timeout=30),
                       f"describing ACLs of {recipient_id}")
    names = {v: k for k, v in _RESOURCES.items()}
    patterns = {v: k for k, v in _PATTERNS.items()}
    operations = {v: k for k, v in _OPERATIONS.items()}
    return {Grant(names.get(b.restype, str(b.restype)), b.name,
                  patterns.get(b.resource_pattern_type, str(b.resource_pattern_type)),
                  operations.get(b.operation, str(b.operation)))
            for b in bindings}  # type: ignore[attr-defined]


# -- SCRAM users --------------------------------------------------------------------------------
def set_password(client: AdminClient, username: str, password: str) -> None:
    upsert = UserScramCredentialUpsertion(
        username, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
        password.encode())
    futures = client.alter_user_scram_credentials([upsert], request_timeout=30)
    _result(futures[username], f"setting the SCRAM credential of {username}")


def scram_users(client: AdminClient) -> set[str]:
    """Every user that has a SCRAM credential."""
    future = client.describe_user_scram_credentials(request_timeout=30)
    described = _result(future, "listing SCRAM users")
    return set(described)  # type: ignore[call-overload]


def grant(client: AdminClient, recipient_id: str) -> None:
    """Exactly the recipient's ACLs: stale ones of this principal are removed first."""
    wanted = set(recipient_grants(recipient_id))
    if granted(client, recipient_id) - wanted:
        _drop_acls(client, recipient_id)
    futures = client.create_acls([_binding(recipient_id, g) for g in sorted(wanted)],
                                 request_timeout=30)
    for binding, future in futures.items():
        _result(future, f"creating ACL {binding}")


def revoke(client: AdminClient, recipient_id: str) -> tuple[bool, int]:
    """Remove the recipient's SCRAM credential and every ACL naming it.

    Returns (had a credential, ACLs removed). Connections already open stay open until they
    re-authenticate (`connections.max.reauth.ms` on the broker bounds that).
    """
    had = recipient_id in scram_users(client)
    if had:
        deletion = UserScramCredentialDeletion(recipient_id, ScramMechanism.SCRAM_SHA_512)
        futures = client.alter_user_scram_credentials([deletion], request_timeout=30)
        _result(futures[recipient_id], f"deleting the SCRAM credential of {recipient_id}")
    return had, _drop_acls(client, recipient_id)


def _drop_acls(client: AdminClient, recipient_id: str) -> int:
    futures = client.delete_acls([_everything_of(recipient_id)], request_timeout=30)
    removed = 0
    for future in futures.values():
        removed += len(_result(future, f"deleting ACLs of {recipient_id}"))  # type: ignore[arg-type]
    return removed
