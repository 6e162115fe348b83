"""The gate's ACL file and Apache Kafka's authorizer semantics.

File (JSON, written by :func:`write_acl_file`; the stack's comes from the identity source,
:meth:`ops.identities.IdentityStore.generate`, with the rules of :mod:`ops.kafka_acls`)::

    {"schema": "edgesight.kafka-acls/1",
     "identities": {"<name>": {"role": "<role>",
                               "acls": [{"type": "topic|group|cluster|transactionalId", "name": "...",
                                         "operations": ["Write", ...], "pattern": "literal|prefix"}]}}}

Semantics (allow rules only): a literal ``*`` matches every resource of its type, a ``prefix`` rule every
name starting with its name; cluster rules ignore the name; ``All`` allows every operation; Read, Write,
Delete and Alter imply Describe; AlterConfigs implies DescribeConfigs. An identity not in the file has no
right at all (the gate refuses its connection).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesight.files import write_private
from ops.kafka_acls import KafkaAcl, kafka_acls

SCHEMA = "edgesight.kafka-acls/1"
TYPES = ("topic", "group", "cluster", "transactionalId")
OPERATIONS = frozenset(
    {
        "All",
        "Read",
        "Write",
        "Create",
        "Delete",
        "Alter",
        "Describe",
        "ClusterAction",
        "DescribeConfigs",
        "AlterConfigs",
        "IdempotentWrite",
    }
)
_IMPLIES_DESCRIBE = frozenset({"Read", "Write", "Delete", "Alter"})


class AclError(ValueError):
    """The ACL file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    acls: tuple[KafkaAcl, ...]

    def allows(self, rtype: str, name: str, op: str) -> bool:
        return any(rule.type == rtype and _matches(rule, name) and _grants(rule, op) for rule in self.acls)

    def may_write_some_topic(self) -> bool:
        """Kafka lets a producer with Write on any topic be idempotent (KIP-679)."""
        return any(rule.type == "topic" and _grants(rule, "Write") for rule in self.acls)


def _matches(rule: KafkaAcl, name: str) -> bool:
    if rule.type == "cluster":
        return True
    if rule.pattern == "prefix":
        return name.startswith(rule.name)
    return rule.name == "*" or rule.name == name


def _grants(rule: KafkaAcl, op: str) -> bool:
    ops = rule.operations
    if op in ops or "All" in ops:
        return True
    if op == "Describe":
        return any(o in _IMPLIES_DESCRIBE for o in ops)
    return op == "DescribeConfigs" and "AlterConfigs" in ops


def role_acls(roles: Mapping[str, str], *, prefix: str, connect: str) -> dict[str, tuple[str, list[KafkaAcl]]]:
    """``{identity name: role}`` -> ``{name: (role, the role's rules resolved for prefix and connect)}``."""
    return {name: (role, kafka_acls(role, prefix=prefix, connect=connect)) for name, role in roles.items()}


def acl_document(identities: Mapping[str, tuple[str, Sequence[KafkaAcl]]]) -> dict[str, Any]:
    """The file's content for ``{identity name: (role, resolved rules)}``; an identity with no rule (an operator:
    no Kafka right) gets no entry, so its connections are refused."""
    out: dict[str, Any] = {}
    for name, (role, rules) in sorted(identities.items()):
        if rules:
            out[name] = {
                "role": role,
                "acls": [
                    {"type": a.type, "name": a.name, "operations": list(a.operations), "pattern": a.pattern}
                    for a in rules
                ],
            }
    return {"schema": SCHEMA, "identities": out}


def write_acl_file(path: Path, identities: Mapping[str, tuple[str, Sequence[KafkaAcl]]]) -> None:
    """Write the ACL file (0600, atomically: the gate never reads half a file) for the active identities
    ``{name: (role, resolved rules)}`` (:func:`role_acls` builds them from roles;
    :meth:`ops.identities.IdentityStore.generate` from the identity source)."""
    write_private(path, json.dumps(acl_document(identities), indent=1) + "\n")


def parse_acl_document(doc: Any, where: str = "ACL file") -> dict[str, Identity]:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("identities"), dict):
        raise AclError(f"{where}: not a {SCHEMA} document")
    out = {}
    for name, entry in doc["identities"].items():
        try:
            rules = tuple(_rule(r) for r in entry["acls"])
            out[name] = Identity(name, str(entry["role"]), rules)
        except (KeyError, TypeError, ValueError) as e:
            raise AclError(f"{where}: identity {name!r}: {e}") from None
    return out


def _rule(raw: Mapping[str, Any]) -> KafkaAcl:
    rtype, pattern = raw["type"], raw.get("pattern", "literal")
    ops = tuple(raw["operations"])
    if rtype not in TYPES or pattern not in ("literal", "prefix") or not isinstance(raw["name"], str):
        raise ValueError(f"bad rule {raw!r}")
    unknown = [o for o in ops if o not in OPERATIONS]
    if unknown:
        raise ValueError(f"unknown operations {unknown}")
    return KafkaAcl(rtype, raw["name"], ops, pattern)


class AclFile:
    """The file, re-read when its mtime (or size) changes; a file that does not parse keeps the last good
    rules (and :meth:`refresh` raises, so the caller logs it)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self.identities: dict[str, Identity] = {}
        self.refresh()

    def refresh(self) -> bool:
        """Re-read when changed; True when the rules changed."""
        try:
            st = self.path.stat()
        except OSError as e:
            raise AclError(f"{self.path}: {e}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return False
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise AclError(f"{self.path}: {e}") from None
        self.identities = parse_acl_document(doc, str(self.path))
        self._stamp = stamp
        return True
