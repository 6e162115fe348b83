"""Convert a CustomResourceDefinition's ``openAPIV3Schema`` into a JSON Schema file (deploy/schemas/SOURCE.md).

    python deploy/schemas/crd2jsonschema.py CRD.yaml OUT_DIR

Writes ``<kind>-<version>.json`` per served version. The conversion is the one kubeconform's
``openapi2jsonschema`` makes, plus strictness the API server applies by pruning: objects that declare
``type: object`` with ``properties`` (and do not preserve unknown fields; ``oneOf`` branches, which only
``required`` some of their parent's properties, stay open) refuse other keys, so a misspelt field is an error
here instead of being silently dropped by the cluster. ``nullable`` becomes a ``null`` type,
``x-kubernetes-int-or-string`` an integer-or-string, and ``apiVersion``/``kind`` are pinned.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def convert(node: Any) -> Any:
    """The JSON Schema for one OpenAPI v3 (structural) schema node."""
    if isinstance(node, list):
        return [convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: convert(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}] + out.get("anyOf", [])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    strict = node.get("type") == "object" and "properties" in node and "additionalProperties" not in node
    if strict and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def crd_schemas(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{file name: JSON Schema}`` for each served version of ``crd``."""
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    out = {}
    for v in crd["spec"]["versions"]:
        if not v.get("served"):
            continue
        schema = convert(v["schema"]["openAPIV3Schema"])
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"type": "string", "const": f"{group}/{v['name']}"}
        props["kind"] = {"type": "string", "const": kind}
        props["metadata"] = {"type": "object"}
        schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        schema["title"] = f"{kind} {group}/{v['name']}"
        out[f"{kind.lower()}-{v['name']}.json"] = schema
    return out


def main(argv: list[str]) -> int:
    crd_file, out_dir = Path(argv[0]), Path(argv[1])
    for doc in yaml.safe_load_all(crd_file.read_text()):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            for name, schema in crd_schemas(doc).items():
                (out_dir / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                print(out_dir / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
