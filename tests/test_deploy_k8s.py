"""deploy/k8s, deploy/compose and deploy/schemas checked with real tools (none of it can run here):

- every overlay rendered by ``kubectl kustomize`` (Debian's kubernetes-client: kubectl 1.20, kustomize v2.0.3);
- every core Kubernetes object validated by ``kubernetes-validate`` (strict, Kubernetes :data:`K8S_VERSION`);
- every Strimzi/KEDA custom resource validated by ``check-jsonschema`` against the CRD schemas vendored in
  deploy/schemas (SOURCE.md), the compose file against the compose specification's schema;
- the generated resources equal to the connector files, the topic specs and the roles' Kafka rights;
- broken copies rejected by the same tools, so each check can fail.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from cloud.config import CloudConfig
from cloud.engineering.settings import EngineeringConfig, FleetConfig
from connectors.spec import CONNECTOR_FILES, load_connector, load_topics, variables
from ops.identities import ROLES
from ops.k8s import CONNECT_CLUSTER, KAFKA_CLUSTER, SECRET_REFS, export_k8s, k8s_variables, user_name
from ops.kafka_acls import KAFKA_ACLS, kafka_acls

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = ROOT / "deploy" / "schemas"
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
CLUSTER_CONFIG = K8S / "base" / "cloud.yaml"
OVERLAYS = ("dev", "prod")
K8S_VERSION = "1.32.0"
CHECK_JSONSCHEMA = str(Path(sys.executable).parent / "check-jsonschema")
CR_GROUPS = ("kafka.strimzi.io/", "keda.sh/")
INDEXED_CONNECTOR = "s3-sink-keyframes"  # the keyframe indexer runs next to Kafka Connect's S3 sink
KAFKA_USERS = [(user_name(role), role) for role in KAFKA_ACLS]

pytestmark = pytest.mark.timeout(120)


def kubectl() -> str:
    exe = shutil.which("kubectl")
    if exe is None:
        pytest.fail("kubectl not found: install Debian's kubernetes-client (deploy/install-system-deps.sh)")
    return exe


def kustomize(path: Path) -> list[dict[str, Any]]:
    res = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"kubectl kustomize {path}: {res.stderr}"
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {o: kustomize(K8S / "overlays" / o) for o in OVERLAYS}


def schema_files() -> dict[tuple[str, str], Path]:
    """(apiVersion, kind) -> vendored JSON schema."""
    out = {}
    for f in SCHEMAS.glob("*.json"):
        props = json.loads(f.read_text()).get("properties", {})
        if "const" in props.get("kind", {}):
            out[(props["apiVersion"]["const"], props["kind"]["const"])] = f
    return out


def is_cr(doc: dict[str, Any]) -> bool:
    return doc["apiVersion"].startswith(CR_GROUPS)


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def check_jsonschema(schema: Path, docs: list[dict[str, Any]], tmp: Path) -> subprocess.CompletedProcess[str]:
    tmp.mkdir(parents=True, exist_ok=True)
    files = []
    for i, d in enumerate(docs):
        f = tmp / f"{i:03d}-{d['kind']}-{d['metadata']['name']}.json"
        f.write_text(json.dumps(d))
        files.append(str(f))
    return subprocess.run(
        [CHECK_JSONSCHEMA, "--schemafile", str(schema), *files], capture_output=True, text=True, timeout=60
    )


def k8s_errors(doc: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
        return str(e)
    return None


# -- rendering and validation -------------------------------------------------------------------------------


def test_core_objects_valid(rendered):
    seen = set()
    for overlay, docs in rendered.items():
        for d in docs:
            if not is_cr(d):
                assert k8s_errors(d) is None, f"{overlay} {d['kind']}/{d['metadata']['name']}: {k8s_errors(d)}"
                seen.add(d["kind"])
    assert {"Deployment", "StatefulSet", "Service", "Job", "PodDisruptionBudget", "ConfigMap"} <= seen


def test_custom_resources_valid(rendered, tmp_path):
    schemas = schema_files()
    by_kind: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for docs in rendered.values():
        for d in docs:
            if is_cr(d):
                by_kind[(d["apiVersion"], d["kind"])].append(d)
    missing = sorted(set(by_kind) - set(schemas))
    assert not missing, f"custom resources without a vendored schema: {missing}"
    wanted = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "KafkaConnect", "KafkaConnector", "ScaledObject"}
    assert wanted <= {k for _, k in by_kind}
    for key, docs in by_kind.items():
        res = check_jsonschema(schemas[key], docs, tmp_path / key[1])
        assert res.returncode == 0, f"{key}: {res.stdout}{res.stderr}"


def test_compose_file_valid():
    res = subprocess.run(
        [CHECK_JSONSCHEMA, "--schemafile", str(SCHEMAS / "compose-spec.json"), str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    doc = yaml.safe_load(COMPOSE.read_text())
    assert {"kafka", "connect", "mongo", "minio"} <= set(doc["services"])
    assert doc["services"]["mongo"]["image"].startswith("mongo:7.")
    assert "broker,controller" in doc["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    for name, svc in doc["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"
        build = svc.get("build")
        if isinstance(build, dict):
            assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file(), name


def test_broken_copies_are_rejected(rendered, tmp_path):
    """Each validator fails on a real mistake in a copy of a rendered manifest."""
    docs = rendered["prod"]
    schemas = schema_files()
    # core objects: a misspelt field, a wrong type, a missing required field
    dep = copy.deepcopy(of_kind(docs, "Deployment")["edgesight-engineering"])
    dep["spec"]["replica"] = 2
    assert k8s_errors(dep) is not None
    dep = copy.deepcopy(of_kind(docs, "Deployment")["edgesight-engineering"])
    dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "metrics"
    assert k8s_errors(dep) is not None
    pdb = copy.deepcopy(of_kind(docs, "StatefulSet")["edgesight-mongo"])
    del pdb["spec"]["selector"]
    assert k8s_errors(pdb) is not None
    # custom resources: a string partition count, an unknown ACL operation, a misspelt field, no listeners
    broken = []
    topic = copy.deepcopy(next(iter(of_kind(docs, "KafkaTopic").values())))
    topic["spec"]["partitions"] = "twelve"
    broken.append(topic)
    user = copy.deepcopy(of_kind(docs, "KafkaUser")[user_name("engineering")])
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Destroy"]
    broken.append(user)
    conn = copy.deepcopy(next(iter(of_kind(docs, "KafkaConnector").values())))
    conn["spec"]["tasksMx"] = conn["spec"].pop("tasksMax")
    broken.append(conn)
    kafka = copy.deepcopy(of_kind(docs, "Kafka")[KAFKA_CLUSTER])
    del kafka["spec"]["kafka"]["listeners"]
    broken.append(kafka)
    scaled = copy.deepcopy(of_kind(docs, "ScaledObject")["edgesight-engineering"])
    del scaled["spec"]["triggers"]
    broken.append(scaled)
    for i, d in enumerate(broken):
        res = check_jsonschema(schemas[(d["apiVersion"], d["kind"])], [d], tmp_path / f"broken{i}")
        assert res.returncode != 0, f"check-jsonschema accepted a broken {d['kind']}"
    # compose: a misspelt top-level key
    bad_compose = yaml.safe_load(COMPOSE.read_text())
    bad_compose["servics"] = bad_compose.pop("services")
    f = tmp_path / "compose.yaml"
    f.write_text(yaml.safe_dump(bad_compose))
    res = subprocess.run([CHECK_JSONSCHEMA, "--schemafile", str(SCHEMAS / "compose-spec.json"), str(f)], timeout=60)
    assert res.returncode != 0
    # kustomize: an overlay that names a missing resource
    bad = tmp_path / "overlay"
    bad.mkdir()
    (bad / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    res = subprocess.run([kubectl(), "kustomize", str(bad)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0


def test_schemas_have_their_source():
    source = (SCHEMAS / "SOURCE.md").read_text()
    for f in SCHEMAS.glob("*.json"):
        assert f"`{f.name}`" in source, f"{f.name} is not in deploy/schemas/SOURCE.md"
    # the schemas are strict: an unknown field of a Strimzi resource is an error, not silently pruned
    topic = json.loads((SCHEMAS / "kafkatopic-v1.json").read_text())
    doc = {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "metadata": {}, "spec": {"partition": 3}}
    assert not jsonschema.Draft7Validator(topic).is_valid(doc)
    doc["spec"] = {"partitions": 3}
    assert jsonschema.Draft7Validator(topic).is_valid(doc)


# -- one source of truth ------------------------------------------------------------------------------------


def cluster_config() -> CloudConfig:
    return CloudConfig.load(CLUSTER_CONFIG)


def test_generated_files_are_a_fresh_export():
    files = export_k8s(cluster_config())
    for name, text in files.items():
        path = K8S / "base" / "generated" / name
        assert path.read_text() == text, (
            f"{path} is stale: run `cloud-ops connectors export --format k8s "
            f"-c deploy/k8s/base/cloud.yaml -o deploy/k8s/base/generated`"
        )


def test_export_cli(tmp_path):
    from ops.cli import app

    res = CliRunner().invoke(app, ["connectors", "export", "--format", "k8s", "-c", str(CLUSTER_CONFIG)])
    assert res.exit_code == 0, res.output
    assert res.output == "".join(export_k8s(cluster_config()).values())
    res = CliRunner().invoke(
        app, ["connectors", "export", "-c", str(CLUSTER_CONFIG), "--output", str(tmp_path / "out")]
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(export_k8s(cluster_config()))
    res = CliRunner().invoke(app, ["connectors", "export", "--format", "helm"])
    assert res.exit_code == 2


def test_connectors_carry_exactly_the_connector_files(rendered):
    cloud = cluster_config()
    for overlay, docs in rendered.items():
        connectors = of_kind(docs, "KafkaConnector")
        assert set(connectors) == set(CONNECTOR_FILES), overlay
        connect = of_kind(docs, "KafkaConnect")[CONNECT_CLUSTER]
        mounts = {m["mountPath"]: m["name"] for m in connect["spec"]["template"]["connectContainer"]["volumeMounts"]}
        volumes = {v["name"]: v["secret"] for v in connect["spec"]["template"]["pod"]["volumes"]}
        for name, path in CONNECTOR_FILES.items():
            want = load_connector(path, k8s_variables(cloud)).config
            got = connectors[name]
            assert got["metadata"]["labels"]["strimzi.io/cluster"] == CONNECT_CLUSTER
            rebuilt = {
                **got["spec"]["config"],
                "connector.class": got["spec"]["class"],
                "tasks.max": str(got["spec"]["tasksMax"]),
                "name": got["metadata"]["name"],
            }
            assert rebuilt == want, f"{overlay}: {name} differs from {path.name}"
            assert all(isinstance(v, str) for v in got["spec"]["config"].values())
            # every secret is a config-provider reference to a Secret the Connect pods mount
            for value in got["spec"]["config"].values():
                assert "{{" not in value
                for mount, key in re.findall(r"\$\{dir:([^:}]+):([^}]+)\}", value):
                    secret = volumes[mounts[mount]]
                    assert (secret["secretName"], key) in SECRET_REFS.values()
                    assert key in [i["key"] for i in secret.get("items", [{"key": key}])]
        # the file's real secrets never reach the cluster resources
        for secret_option in ("connection.uri", "aws.secret.access.key"):
            for c in connectors.values():
                assert c["spec"]["config"].get(secret_option, "${dir:").startswith("${dir:")
        assert connect["spec"]["config"]["config.providers.dir.param.allowed.paths"] == "/mnt/secrets"
        assert connect["metadata"]["annotations"]["strimzi.io/use-connector-resources"] == "true"


def test_every_topic_spec_has_its_kafka_topic(rendered):
    specs = load_topics(variables(cluster_config()))
    for overlay, docs in rendered.items():
        topics = {d["spec"]["topicName"]: d for d in of_kind(docs, "KafkaTopic").values()}
        assert set(topics) == {s.name for s in specs}, overlay
        for s in specs:
            t = topics[s.name]
            assert t["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA_CLUSTER
            assert t["spec"]["partitions"] == s.partitions
            assert t["spec"].get("replicas", -1) == s.replication_factor
            assert {k: str(v) for k, v in t["spec"]["config"].items()} == s.config, f"{overlay}: {s.name}"


def acl_set(user: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {
        (
            a["resource"]["type"],
            a["resource"].get("name", ""),
            a["resource"].get("patternType", "literal"),
            tuple(sorted(a["operations"])),
        )
        for a in user["spec"]["authorization"]["acls"]
    }


def test_every_role_has_its_kafka_user(rendered):
    assert set(KAFKA_ACLS) == set(ROLES), "ops/kafka_acls.py and ops/identities.py ROLES differ"
    prefix = cluster_config().kafka.topic_prefix
    for overlay, docs in rendered.items():
        users = of_kind(docs, "KafkaUser")
        for role in ROLES:
            acls = kafka_acls(role, prefix=prefix, connect=CONNECT_CLUSTER)
            if not acls:  # the operator has no Kafka right: no Kafka identity at all
                assert user_name(role) not in users
                continue
            user = users[user_name(role)]
            assert user["metadata"]["labels"]["edgesight.io/role"] == role
            assert user["spec"]["authentication"]["type"] == "scram-sha-512"
            want = {(a.type, a.name, a.pattern, tuple(sorted(a.operations))) for a in acls}
            assert acl_set(user) == want, f"{overlay}: {role}"
        assert len(users) == sum(1 for a in KAFKA_ACLS.values() if a)


def test_acls_name_the_topics_and_groups_the_code_uses():
    topics = {s.name for s in load_topics(variables(cluster_config()))}
    for role in KAFKA_ACLS:
        for a in kafka_acls(role):
            if a.type == "topic" and a.pattern == "literal":
                assert a.name in topics, f"{role}: {a.name} is not in connectors/topics.yaml"
    groups = {a.name for a in kafka_acls("engineering") if a.type == "group"}
    assert groups == {EngineeringConfig().group_id}
    assert {a.name for a in kafka_acls("fleet") if a.type == "group"} == {FleetConfig().group_id}
    # the agent produces, never consumes; the analytics consumer cannot write the detections topic
    assert all("Read" not in a.operations for a in kafka_acls("agent"))
    det = [a for a in kafka_acls("engineering") if a.name.endswith(".detections.v1")]
    assert det and all("Write" not in a.operations for a in det)


# -- the cluster's shape ------------------------------------------------------------------------------------


def test_cluster_topology(rendered):
    for docs in rendered.values():
        kafka = of_kind(docs, "Kafka")[KAFKA_CLUSTER]["spec"]["kafka"]
        assert kafka["config"]["default.replication.factor"] == 3
        assert kafka["config"]["min.insync.replicas"] == 2
        assert kafka["rack"]["topologyKey"] == "topology.kubernetes.io/zone"
        assert kafka["authorization"]["type"] == "simple"
        assert all(lst["tls"] and lst["authentication"]["type"] == "scram-sha-512" for lst in kafka["listeners"])
        pools = of_kind(docs, "KafkaNodePool")
        assert sorted((p["spec"]["roles"], p["spec"]["replicas"]) for p in pools.values()) == [
            (["broker"], 3),
            (["controller"], 3),
        ]
        mongo = of_kind(docs, "StatefulSet")["edgesight-mongo"]
        assert mongo["spec"]["replicas"] == 3
        assert "--replSet" in mongo["spec"]["template"]["spec"]["containers"][0]["args"]
        rs_init = of_kind(docs, "Job")["edgesight-mongo-rs-init"]
        assert 'w: "majority"' in rs_init["spec"]["template"]["spec"]["containers"][0]["command"][-1]
        init = of_kind(docs, "Job")["edgesight-warehouse-init"]["spec"]["template"]["spec"]["containers"][0]
        assert init["args"][:2] == ["warehouse", "init"]


def test_consumers_scale_on_lag_with_health_probes(rendered):
    partitions = {s.name: s.partitions for s in load_topics(variables(cluster_config()))}
    # deployment -> (its consumer group as the code names it, its KafkaUser)
    groups = {
        "edgesight-engineering": (EngineeringConfig().group_id, user_name("engineering")),
        "edgesight-fleet": (FleetConfig().group_id, user_name("fleet")),
        "edgesight-keyframe-indexer": (f"edgesight-keyframe-indexer-{INDEXED_CONNECTOR}", user_name("sink")),
    }
    for overlay, docs in rendered.items():
        deployments = of_kind(docs, "Deployment")
        scaled = of_kind(docs, "ScaledObject")
        assert set(deployments) == set(groups) == set(scaled)
        for name, dep in deployments.items():
            c = dep["spec"]["template"]["spec"]["containers"][0]
            port = int(c["args"][c["args"].index("--metrics-port") + 1])
            # served on the pod's address, so the kubelet's probes and Prometheus reach it
            assert c["args"][c["args"].index("--metrics-host") + 1] == "0.0.0.0", (overlay, name)
            named = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert named["metrics"] == port
            for probe in ("livenessProbe", "readinessProbe"):
                assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, (overlay, name)
            so = scaled[name]["spec"]
            assert so["scaleTargetRef"]["name"] == name
            trigger = so["triggers"][0]
            assert trigger["type"] == "kafka"
            group, user = groups[name]
            assert trigger["metadata"]["consumerGroup"] == group
            assert so["maxReplicaCount"] == partitions[trigger["metadata"]["topic"]]
            env = {e["name"]: e for e in c["env"]}
            assert env["EDGESIGHT_CLOUD__KAFKA__SASL_USERNAME"]["value"] == user
            assert env["EDGESIGHT_CLOUD__KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == user
            assert user in of_kind(docs, "KafkaUser")
            # the user's ACLs let it read the topic in that group (what KEDA's lag query and the consumer need)
            acls = kafka_acls(dict(KAFKA_USERS)[user])
            assert any(
                a.type == "topic" and a.name == trigger["metadata"]["topic"] and "Read" in a.operations for a in acls
            )
            assert any(a.type == "group" and group.startswith(a.name) and "Read" in a.operations for a in acls)


def test_resources_and_disruption_budgets(rendered):
    for overlay, docs in rendered.items():
        pdb_selectors = [d["spec"]["selector"]["matchLabels"] for d in docs if d["kind"] == "PodDisruptionBudget"]
        for d in docs:
            if d["kind"] in ("Deployment", "StatefulSet", "Job"):
                pod = d["spec"]["template"]["spec"]
                for c in pod.get("initContainers", []) + pod["containers"]:
                    res = c.get("resources", {})
                    assert {"cpu", "memory"} <= set(res.get("requests", {})), (overlay, d["metadata"]["name"])
                    assert {"cpu", "memory"} <= set(res.get("limits", {})), (overlay, d["metadata"]["name"])
                    assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert pod["securityContext"]["runAsNonRoot"] is True
            if d["kind"] in ("Deployment", "StatefulSet"):
                labels = d["spec"]["template"]["metadata"]["labels"]
                assert any(s.items() <= labels.items() for s in pdb_selectors), f"no PDB for {d['metadata']['name']}"
        for kind in ("Kafka", "KafkaConnect"):
            for d in of_kind(docs, kind).values():
                tmpl = d["spec"]["kafka"]["template"] if kind == "Kafka" else d["spec"]["template"]
                assert tmpl["podDisruptionBudget"]["maxUnavailable"] == 1
        for kind in ("KafkaNodePool", "KafkaConnect"):
            for d in of_kind(docs, kind).values():
                assert {"requests", "limits"} <= set(d["spec"]["resources"])


def test_connect_user_covers_what_the_workers_touch(rendered):
    """The KafkaConnect login's ACLs cover its group, internal topics, the connectors' topics and dead letters."""
    docs = rendered["prod"]
    connect = of_kind(docs, "KafkaConnect")[CONNECT_CLUSTER]["spec"]
    user = connect["authentication"]["username"]
    role = dict(KAFKA_USERS)[user]
    acls = kafka_acls(role, prefix=cluster_config().kafka.topic_prefix, connect=CONNECT_CLUSTER)

    def allowed(kind: str, name: str, op: str) -> bool:
        return any(
            a.type == kind
            and (a.name == name if a.pattern == "literal" else name.startswith(a.name))
            and (op in a.operations or "All" in a.operations)
            for a in acls
        )

    assert allowed("group", connect["groupId"], "Read")
    for key in ("configStorageTopic", "offsetStorageTopic", "statusStorageTopic"):
        assert allowed("topic", connect[key], "Write") and allowed("topic", connect[key], "Read")
    for c in of_kind(docs, "KafkaConnector").values():
        cfg = c["spec"]["config"]
        for topic in cfg["topics"].split(","):
            assert allowed("topic", topic, "Read"), (c["metadata"]["name"], topic)
        assert allowed("topic", cfg["errors.deadletterqueue.topic.name"], "Write")
        assert allowed("group", f"connect-{c['metadata']['name']}", "Read")  # a sink connector's consumer group


def test_crd_conversion():
    """deploy/schemas/crd2jsonschema.py: OpenAPI quirks become JSON Schema, objects are closed, oneOf stays open."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("crd2jsonschema", SCHEMAS / "crd2jsonschema.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    node = {
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True},
            "note": {"type": "string", "nullable": True},
            "ref": {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "oneOf": [{"properties": {"a": {}}, "required": ["a"]}, {"properties": {"b": {}}, "required": ["b"]}],
            },
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    crd = {
        "spec": {
            "group": "example.io",
            "names": {"kind": "Thing"},
            "versions": [{"name": "v1", "served": True, "schema": {"openAPIV3Schema": node}}],
        }
    }
    schema = mod.crd_schemas(crd)["thing-v1.json"]
    v = jsonschema.Draft7Validator(schema)
    base = {"apiVersion": "example.io/v1", "kind": "Thing", "metadata": {}}
    assert v.is_valid({**base, "port": 8080}) and v.is_valid({**base, "port": "http"})
    assert v.is_valid({**base, "note": None})
    assert v.is_valid({**base, "ref": {"a": "x"}})
    assert not v.is_valid({**base, "ref": {"a": "x", "b": "y"}})  # oneOf: exactly one
    assert not v.is_valid({**base, "ref": {"a": "x", "c": "y"}})  # closed object (the oneOf branch alone is open)
    assert v.is_valid({**base, "free": {"anything": 1}})
    assert not v.is_valid({**base, "kind": "Other"})
    assert not v.is_valid({**base, "typo": 1})
