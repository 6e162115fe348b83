"""Who may do what: one identity source for every server of the stack (issue #12).

The source is ``<dir>/identities.json`` (0600): agents and operators (each with a site), service
roles (``sink``, ``connector``, ``engineering``, ``fleet``, ``ops``). From it come

- Mosquitto's password file (PBKDF2-SHA512 hashes in Mosquitto's own ``$7$`` format; the store
  keeps only the hash, the plain password is handed out once) and ACL file: agent ``A`` subscribes
  only ``<root>/A/cmd`` and publishes only ``<root>/A/{status,ack,camera/#}``; an operator of site
  ``S`` commands (``cmd``) and reads (``status``, ``ack``, ``camera/#``) only the agents of ``S``;
  ``ops`` has ``#``; the other services have no MQTT right (no password entry at all);
- SeaweedFS's ``-s3.config`` identities, each with its own actions (S3 signs with a shared secret,
  so these secrets are stored as they are, in 0600 files): ``sink``/``connector`` read+write the
  keyframes bucket, ``engineering`` reads it, ``ops`` is admin; agents, operators and ``fleet``
  have no S3 identity;
- a CA and certificates (``cryptography``): the server certificate for ``127.0.0.1``/``localhost``
  and, on request, a client certificate per identity.

- Kafka: every identity of a role with Kafka rights gets a client certificate (CN = its name: mutual TLS is its
  Kafka login), and ``<dir>/generated/kafka-acls.json`` holds the rules of each active one
  (:data:`ops.kafka_acls.KAFKA_ACLS`, resolved with the identity's topic prefix; ``superusers`` get every right,
  like Kafka's ``super.users``). The embedded Tansu broker enforces nothing itself: :mod:`ops.kafka_gate`, behind
  haproxy's client-certificate check, enforces this file. The production ACLs (Strimzi ``KafkaUser`` resources)
  are generated from the same :data:`~ops.kafka_acls.KAFKA_ACLS`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgesight.files import write_private
from edgesight.log import get_logger, register_secret
from edgesight.mqtt import check_password
from ops.kafka_acls import KAFKA_ACLS, KafkaAcl, ResourceType, kafka_acls
from ops.kafka_gate.acl import write_acl_file

log = get_logger("identities")

Role = Literal["agent", "operator", "sink", "connector", "engineering", "fleet", "ops"]
ROLES: tuple[str, ...] = ("agent", "operator", "sink", "connector", "engineering", "fleet", "ops")
SITE_ROLES = ("agent", "operator")
MQTT_ROLES = ("agent", "operator", "ops")
KAFKA_ROLES: tuple[str, ...] = tuple(r for r in ROLES if KAFKA_ACLS[r])
"""Roles with Kafka rights: their identities always get a client certificate (their Kafka login)."""
TOPIC_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,100}$")  # = KafkaConfig.topic_prefix
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # = the wire contract's agent id pattern
STORE_FILE = "identities.json"
PBKDF2_ITERATIONS = 20_000  # Mosquitto's own tool uses 101; the format carries the count

S3_ACTIONS: dict[str, list[str]] = {
    "sink": ["Read:{keyframes}", "Write:{keyframes}", "List:{keyframes}"],
    "connector": ["Read:{keyframes}", "Write:{keyframes}", "List:{keyframes}"],
    "engineering": ["Read:{keyframes}", "List:{keyframes}"],
    "ops": ["Admin", "Read", "Write", "List", "Tagging"],
}
"""S3 actions per role ({keyframes}: the keyframe bucket). Roles not listed get no S3 identity."""


_KAFKA_TYPES: tuple[ResourceType, ...] = ("topic", "group", "cluster", "transactionalId")


class IdentityError(ValueError):
    """A refused identity operation; the message names the identity and the reason."""


def mosquitto_hash(password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None) -> str:
    """Mosquitto 2's password-file hash: ``$7$<iterations>$<salt b64>$<PBKDF2-SHA512 b64>``."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_mosquitto_hash(password: str, hashed: str) -> bool:
    _, seven, iterations, salt, digest = hashed.split("$")
    if seven != "7":
        return False
    mine = mosquitto_hash(password, iterations=int(iterations), salt=base64.b64decode(salt))
    return secrets.compare_digest(mine, hashed)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Identity:
    name: str
    role: str
    site: str | None = None
    mqtt_hash: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None  # S3 signatures need the secret itself on the server side
    client_cert: bool = False
    topic_prefix: str | None = None  # Kafka topic prefix of its rules (None: the store's)
    created_at: str = field(default_factory=_now)
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass
class Issued:
    """What an issue hands out once: the plain secrets and where the certificate files are."""

    identity: Identity
    mqtt_password: str | None
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    mqtt_cert: bool = False  # the certificate was asked for MQTT too (Kafka roles always get one)

    def bundle(self) -> dict[str, Any]:
        """The credentials file for the identity's owner (``edge-agent install --credentials``)."""
        doc: dict[str, Any] = {
            "schema": "edgesight.credentials/1",
            "name": self.identity.name,
            "role": self.identity.role,
            "site": self.identity.site,
            "mqtt": {"username": self.identity.name, "password": self.mqtt_password},
            "ca_pem": self.ca_file.read_text(),
        }
        if self.cert_file and self.key_file:
            cert = {"cert_pem": self.cert_file.read_text(), "key_pem": self.key_file.read_text()}
            if self.mqtt_cert:
                doc["mqtt"].update(cert)
            if self.identity.role in KAFKA_ROLES:  # mutual TLS is the Kafka login
                doc["kafka"] = {**cert, "topic_prefix": self.identity.topic_prefix}
        if self.identity.s3_access_key:
            doc["s3"] = {"access_key": self.identity.s3_access_key, "secret_key": self.identity.s3_secret_key}
        return doc


def kafka_login(bundle: dict[str, Any], directory: Path) -> dict[str, str]:
    """An identity's Kafka login from its credentials file (:meth:`Issued.bundle`): its client certificate and
    key, written 0600 under ``directory``, as ``kafka`` config fields (``ssl_certificate_location``,
    ``ssl_key_location``). ``KeyError`` when the bundle has no Kafka login (a role without Kafka rights)."""
    name, kafka = bundle["name"], bundle["kafka"]
    return {
        "ssl_certificate_location": str(write_private(directory / f"{name}.kafka.pem", kafka["cert_pem"])),
        "ssl_key_location": str(write_private(directory / f"{name}.kafka.key", kafka["key_pem"])),
    }


class IdentityStore:
    """The identity source and everything generated from it, under one private directory.

    ``<dir>/identities.json`` the source; ``<dir>/ca/`` CA and server certificate; ``<dir>/clients/``
    client certificates; ``<dir>/generated/`` Mosquitto password + ACL files and SeaweedFS's s3.json."""

    def __init__(
        self,
        directory: Path,
        *,
        topic_root: str = "edgesight",
        keyframe_bucket: str = "edgesight-keyframes",
        kafka_prefix: str = "edgesight",
        connect: str = "edgesight-connect",
        superusers: tuple[str, ...] = (),
    ):
        self.dir = Path(directory).absolute()
        self.topic_root = topic_root
        self.keyframe_bucket = keyframe_bucket
        self.kafka_prefix, self.connect, self.superusers = kafka_prefix, connect, superusers
        self.path = self.dir / STORE_FILE

    # -- paths --
    @property
    def ca_file(self) -> Path:
        return self.dir / "ca" / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.dir / "ca" / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.dir / "ca" / "server.key"

    @property
    def server_bundle(self) -> Path:
        """Server certificate and key in one PEM (haproxy's ``crt``)."""
        return self.dir / "ca" / "server-bundle.pem"

    @property
    def mosquitto_passwd(self) -> Path:
        return self.dir / "generated" / "mosquitto.passwd"

    @property
    def mosquitto_acl(self) -> Path:
        return self.dir / "generated" / "mosquitto.acl"

    @property
    def s3_config(self) -> Path:
        return self.dir / "generated" / "s3.json"

    @property
    def kafka_acl_file(self) -> Path:
        """The Kafka rules of the active identities (:mod:`ops.kafka_gate` enforces them)."""
        return self.dir / "generated" / "kafka-acls.json"

    def client_files(self, name: str) -> tuple[Path, Path]:
        return self.dir / "clients" / f"{name}.pem", self.dir / "clients" / f"{name}.key"

    # -- the source --
    def load(self) -> dict[str, Identity]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as e:
            raise IdentityError(f"cannot read {self.path}: {e}") from None
        out = {}
        for raw in doc.get("identities", []):
            try:
                ident = Identity(**raw)
            except TypeError as e:
                raise IdentityError(f"{self.path}: not an identity record ({e})") from None
            register_secret(ident.s3_secret_key)
            out[ident.name] = ident
        return out

    def _save(self, identities: dict[str, Identity]) -> None:
        doc = {"schema": "edgesight.identities/1", "identities": [asdict(i) for i in identities.values()]}
        write_private(self.path, json.dumps(doc, indent=2) + "\n")

    def add(
        self,
        name: str,
        role: str,
        *,
        site: str | None = None,
        client_cert: bool = False,
        topic_prefix: str | None = None,
    ) -> Issued:
        """Issue a new identity (fresh secrets); refused when the name exists (revoked ones too: names
        are not reused, so an old ACL line or certificate can never match a new owner). A role with Kafka
        rights always gets a client certificate; ``client_cert`` asks for one for MQTT too. ``topic_prefix``:
        the Kafka topic prefix its rules name (default the store's ``kafka_prefix``)."""
        if role not in ROLES:
            raise IdentityError(f"role {role!r}: choose from {', '.join(ROLES)}")
        if not NAME_PATTERN.match(name):
            raise IdentityError(f"name {name[:80]!r} must match {NAME_PATTERN.pattern}")
        if role in SITE_ROLES:
            if not site or not NAME_PATTERN.match(site):
                raise IdentityError(f"a {role} needs a site matching {NAME_PATTERN.pattern}")
        elif site:
            raise IdentityError(f"a {role} has no site")
        identities = self.load()
        if name in identities:
            state = "active" if identities[name].active else "revoked"
            raise IdentityError(f"identity {name!r} exists ({identities[name].role}, {state}); names are not reused")
        self.ensure_ca()
        password = secrets.token_urlsafe(24) if role in MQTT_ROLES else None
        if password is not None:
            check_password(password)
        ident = Identity(name=name, role=role, site=site, mqtt_hash=mosquitto_hash(password) if password else None)
        if role in S3_ACTIONS:
            ident.s3_access_key = f"es-{name}"
            ident.s3_secret_key = secrets.token_urlsafe(30)
            register_secret(ident.s3_secret_key)
        register_secret(password)
        if topic_prefix is not None:
            if not TOPIC_PREFIX_PATTERN.match(topic_prefix):
                raise IdentityError(f"topic prefix {topic_prefix[:120]!r} must match {TOPIC_PREFIX_PATTERN.pattern}")
            ident.topic_prefix = topic_prefix
        cert = key = None
        if client_cert or role in KAFKA_ROLES:
            cert, key = self._issue_client_cert(name)
            ident.client_cert = True
        identities[name] = ident
        self._save(identities)
        self.generate()
        log.info("identity issued", extra={"identity": name, "role": role, "site": site})
        return Issued(ident, password, self.ca_file, cert, key, mqtt_cert=client_cert)

    def revoke(self, name: str) -> Identity:
        identities = self.load()
        ident = identities.get(name)
        if ident is None:
            raise IdentityError(f"no identity {name!r}")
        if ident.active:
            ident.revoked_at = _now()
            for p in self.client_files(name):
                p.unlink(missing_ok=True)
            self._save(identities)
            self.generate()
            log.info("identity revoked", extra={"identity": name, "role": ident.role})
        return ident

    def active(self) -> list[Identity]:
        return [i for i in self.load().values() if i.active]

    # -- generated server files --
    def generate(self) -> None:
        """(Re)write Mosquitto's password and ACL files and SeaweedFS's s3.json from the source."""
        active = self.active()
        write_private(self.mosquitto_passwd, "".join(f"{i.name}:{i.mqtt_hash}\n" for i in active if i.mqtt_hash))
        write_private(self.mosquitto_acl, self.acl_text(active))
        write_private(self.s3_config, json.dumps(self.s3_identities(active), indent=2) + "\n")
        write_acl_file(self.kafka_acl_file, self.kafka_rules(active))

    def kafka_rules(self, active: list[Identity]) -> dict[str, tuple[str, list[KafkaAcl]]]:
        """The Kafka rules of the active identities (``{name: (role, resolved rules)}``, the gate's ACL file): a
        role's rules resolved with the identity's topic prefix; ``superusers`` get every right (Kafka's
        ``super.users``); a role without Kafka rights gets none (its connections are refused)."""
        out: dict[str, tuple[str, list[KafkaAcl]]] = {}
        for i in active:
            if i.name in self.superusers:
                out[i.name] = (i.role, [KafkaAcl(t, "*", ("All",)) for t in _KAFKA_TYPES])
            else:
                prefix = i.topic_prefix or self.kafka_prefix
                out[i.name] = (i.role, kafka_acls(i.role, prefix=prefix, connect=self.connect))
        return out

    def acl_text(self, active: list[Identity]) -> str:
        r = self.topic_root
        lines = ["# generated by ops/identities.py from identities.json: do not edit", ""]
        agents_by_site: dict[str, list[str]] = {}
        for i in active:
            if i.role == "agent" and i.site:
                agents_by_site.setdefault(i.site, []).append(i.name)
        for i in sorted(active, key=lambda x: (x.role, x.name)):
            if i.role not in MQTT_ROLES:
                continue
            lines.append(f"user {i.name}")
            if i.role == "agent":
                lines += [
                    f"topic read {r}/{i.name}/cmd",
                    f"topic write {r}/{i.name}/status",
                    f"topic write {r}/{i.name}/ack",
                    f"topic write {r}/{i.name}/camera/#",
                ]
            elif i.role == "operator":
                for agent in sorted(agents_by_site.get(i.site or "", [])):
                    lines += [
                        f"topic write {r}/{agent}/cmd",
                        f"topic read {r}/{agent}/status",
                        f"topic read {r}/{agent}/ack",
                        f"topic read {r}/{agent}/camera/#",
                    ]
            else:  # ops
                lines.append("topic readwrite #")
            lines.append("")
        return "\n".join(lines) + "\n"

    def s3_identities(self, active: list[Identity]) -> dict[str, Any]:
        out = []
        for i in active:
            if i.role in S3_ACTIONS and i.s3_access_key and i.s3_secret_key:
                actions = [a.format(keyframes=self.keyframe_bucket) for a in S3_ACTIONS[i.role]]
                out.append(
                    {
                        "name": i.name,
                        "credentials": [{"accessKey": i.s3_access_key, "secretKey": i.s3_secret_key}],
                        "actions": actions,
                    }
                )
        return {"identities": out}

    # -- certificates --
    def ensure_ca(self, hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")) -> Path:
        """Create the CA and the server certificate (for ``hosts``) once; later calls keep them."""
        if self.ca_file.exists() and self.server_cert.exists() and self.server_key.exists():
            return self.ca_file
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EdgeSight stack CA")])
        now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
            )  # digital_signature, key_cert_sign, crl_sign
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        pkcs8 = serialization.PrivateFormat.PKCS8
        nocrypt = serialization.NoEncryption()
        write_private(self.dir / "ca" / "ca.key", ca_key.private_bytes(pem, pkcs8, nocrypt))
        write_private(self.server_key, key.private_bytes(pem, pkcs8, nocrypt))
        write_private(self.server_cert, cert.public_bytes(pem))
        write_private(self.server_bundle, cert.public_bytes(pem) + key.private_bytes(pem, pkcs8, nocrypt))
        write_private(self.ca_file, ca.public_bytes(pem))
        return self.ca_file

    def _issue_client_cert(self, name: str) -> tuple[Path, Path]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key = serialization.load_pem_private_key((self.dir / "ca" / "ca.key").read_bytes(), password=None)
        ca = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise IdentityError("the CA key is not an EC key")
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = self.client_files(name)
        pem = serialization.Encoding.PEM
        write_private(
            key_path,
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        )
        write_private(cert_path, cert.public_bytes(pem))
        return cert_path, key_path
