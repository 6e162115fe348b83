"""Documented option names of the connectors EdgeSight deploys, and the subset the Python
runner (``cloud-ops connectors run``) implements.

Every name below was checked against the documentation page (or, where the page is
silent, the connector's own ``ConfigDef`` source) listed in :data:`DOC_SOURCES`;
``connectors/README.md`` carries the same table. :func:`check_options` is the static
option-name check: a name that is not documented for the connector class is an error.
:func:`unsupported_by_runner` lists what the Python runner does not implement, so that
it refuses to start rather than silently ignoring a setting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MONGO_SINK = "com.mongodb.kafka.connect.MongoSinkConnector"
S3_SINK = "io.confluent.connect.s3.S3SinkConnector"

REPLACE_FIELD = "org.apache.kafka.connect.transforms.ReplaceField$Value"
TIMESTAMP_CONVERTER = "org.apache.kafka.connect.transforms.TimestampConverter$Value"


class RunnerConfigError(ValueError):
    """The connector file asks for something the Python runner cannot do; the message names the option."""


DOC_SOURCES = {
    "connect": "https://kafka.apache.org/documentation/#sinkconnectorconfigs (Kafka Connect sink connector configs); "
    "errors.*: KIP-298 and https://www.mongodb.com/docs/kafka-connector/current/sink-connector/configuration-properties/error-handling/",
    MONGO_SINK: "https://www.mongodb.com/docs/kafka-connector/current/sink-connector/configuration-properties/all-properties/ "
    "(+ id-strategy/, error-handling/, time-series/ pages)",
    S3_SINK: "https://docs.confluent.io/kafka-connectors/s3-sink/current/configuration_options.html and "
    "confluentinc/kafka-connect-storage-cloud S3SinkConnectorConfig.java (format.bytearray.separator)",
    REPLACE_FIELD: "https://docs.confluent.io/kafka-connectors/transforms/current/replacefield.html",
    TIMESTAMP_CONVERTER: "https://docs.confluent.io/kafka-connectors/transforms/current/timestampconverter.html",
}

# Kafka Connect framework options valid for every sink connector.
CONNECT_SINK_OPTIONS = frozenset(
    {
        "name",
        "connector.class",
        "tasks.max",
        "topics",
        "topics.regex",
        "key.converter",
        "value.converter",
        "header.converter",
        "config.action.reload",
        "transforms",
        "predicates",
        "errors.retry.timeout",
        "errors.retry.delay.max.ms",
        "errors.tolerance",
        "errors.log.enable",
        "errors.log.include.messages",
        "errors.deadletterqueue.topic.name",
        "errors.deadletterqueue.topic.replication.factor",
        "errors.deadletterqueue.context.headers.enable",
    }
)
# Prefixes the framework passes on (converter settings, SMT settings, per-connector client overrides).
CONNECT_PREFIXES = (
    "key.converter.",
    "value.converter.",
    "header.converter.",
    "transforms.",
    "predicates.",
    "consumer.override.",
    "admin.override.",
)

MONGO_SINK_OPTIONS = frozenset(
    {
        # connection / namespace
        "connection.uri",
        "database",
        "collection",
        "namespace.mapper",
        "namespace.mapper.key.database.field",
        "namespace.mapper.key.collection.field",
        "namespace.mapper.value.database.field",
        "namespace.mapper.value.collection.field",
        "namespace.mapper.error.if.invalid",
        # message processing
        "max.batch.size",
        "bulk.write.ordered",
        "rate.limiting.timeout",
        "rate.limiting.every.n",
        "max.num.retries",
        "retries.defer.timeout",
        # post processors
        "post.processor.chain",
        "key.projection.type",
        "key.projection.list",
        "value.projection.type",
        "value.projection.list",
        "field.renamer.mapping",
        "field.renamer.regexp",
        "writemodel.strategy",
        "delete.writemodel.strategy",
        # id strategy
        "document.id.strategy",
        "document.id.strategy.overwrite.existing",
        "document.id.strategy.uuid.format",
        "delete.on.null.values",
        "document.id.strategy.partial.key.projection.type",
        "document.id.strategy.partial.key.projection.list",
        "document.id.strategy.partial.value.projection.type",
        "document.id.strategy.partial.value.projection.list",
        # change data capture
        "change.data.capture.handler",
        # time series
        "timeseries.timefield",
        "timeseries.timefield.auto.convert",
        "timeseries.timefield.auto.convert.date.format",
        "timeseries.timefield.auto.convert.locale.language.tag",
        "timeseries.metafield",
        "timeseries.expire.after.seconds",
        "timeseries.granularity",
        # error handling (connector-level overrides of the framework's)
        "mongo.errors.tolerance",
        "mongo.errors.log.enable",
    }
)
MONGO_PREFIXES = ("topic.override.",)

S3_SINK_OPTIONS = frozenset(
    {
        # connector (storage sink)
        "format.class",
        "flush.size",
        "rotate.interval.ms",
        "rotate.schedule.interval.ms",
        "schema.compatibility",
        "retry.backoff.ms",
        "filename.offset.zero.pad.width",
        "avro.codec",
        "parquet.codec",
        "enhanced.avro.schema.support",
        "connect.meta.data",
        "record.batch.max.size",
        # S3
        "s3.bucket.name",
        "s3.object.tagging",
        "s3.object.tagging.key.value.pairs",
        "s3.object.behavior.on.tagging.error",
        "s3.region",
        "s3.part.size",
        "s3.credentials.provider.class",
        "aws.access.key.id",
        "aws.secret.access.key",
        "s3.ssea.name",
        "s3.sse.customer.key",
        "s3.sse.kms.key.id",
        "s3.acl.canned",
        "s3.wan.mode",
        "s3.compression.type",
        "s3.compression.level",
        "json.decimal.format",
        "s3.part.retries",
        "s3.retry.backoff.ms",
        "format.bytearray.extension",
        "format.bytearray.separator",
        "s3.proxy.url",
        "s3.proxy.user",
        "s3.proxy.password",
        "s3.http.send.expect.continue",
        "behavior.on.null.values",
        "tombstone.encoded.partition",
        "s3.schema.partition.affix.type",
        "s3.send.digest",
        "store.kafka.keys",
        "store.kafka.headers",
        "keys.format.class",
        "headers.format.class",
        "s3.path.style.access.enabled",
        "s3.elastic.buffer.enable",
        "s3.elastic.buffer.init.capacity",
        # storage common
        "storage.class",
        "topics.dir",
        "store.url",
        "directory.delim",
        "file.delim",
        # partitioner
        "partitioner.class",
        "partition.field.name",
        "partition.duration.ms",
        "path.format",
        "locale",
        "timezone",
        "timestamp.extractor",
        "timestamp.field",
    }
)
S3_PREFIXES = ("s3.credentials.provider.",)

SMT_OPTIONS = {
    REPLACE_FIELD: frozenset(
        {"type", "exclude", "include", "renames", "blacklist", "whitelist", "replace.null.with.default"}
    ),
    TIMESTAMP_CONVERTER: frozenset(
        {"type", "field", "target.type", "format", "unix.precision", "replace.null.with.default"}
    ),
}

CONNECTOR_OPTIONS = {MONGO_SINK: (MONGO_SINK_OPTIONS, MONGO_PREFIXES), S3_SINK: (S3_SINK_OPTIONS, S3_PREFIXES)}

# ---- what the Python runner implements ---------------------------------------------------------

RUNNER_COMMON = frozenset(
    {
        "name",
        "connector.class",
        "tasks.max",
        "topics",
        "key.converter",
        "value.converter",
        "value.converter.schemas.enable",
        "transforms",
        "errors.tolerance",
        "errors.log.enable",
        "errors.log.include.messages",
        "errors.deadletterqueue.topic.name",
        "errors.deadletterqueue.topic.replication.factor",
        "errors.deadletterqueue.context.headers.enable",
    }
)
RUNNER_MONGO = frozenset(
    {
        "connection.uri",
        "database",
        "collection",
        "max.batch.size",
        "bulk.write.ordered",
        "document.id.strategy",
        "writemodel.strategy",
        "mongo.errors.tolerance",
        "mongo.errors.log.enable",
    }
)
RUNNER_S3 = frozenset(
    {
        "s3.bucket.name",
        "s3.region",
        "store.url",
        "aws.access.key.id",
        "aws.secret.access.key",
        "s3.path.style.access.enabled",
        "storage.class",
        "format.class",
        "format.bytearray.extension",
        "format.bytearray.separator",
        "flush.size",
        "rotate.interval.ms",
        "rotate.schedule.interval.ms",
        "topics.dir",
        "partitioner.class",
        "path.format",
        "partition.duration.ms",
        "locale",
        "timezone",
        "timestamp.extractor",
        "filename.offset.zero.pad.width",
        "behavior.on.null.values",
    }
)
RUNNER_SMT = {
    REPLACE_FIELD: frozenset({"type", "exclude", "include", "renames"}),
    TIMESTAMP_CONVERTER: frozenset({"type", "field", "target.type", "format"}),
}

# Allowed values for the class-valued options the runner implements.
RUNNER_VALUES = {
    "key.converter": {
        "org.apache.kafka.connect.storage.StringConverter",
        "org.apache.kafka.connect.converters.ByteArrayConverter",
    },
    "value.converter.schemas.enable": {"false"},
    "errors.tolerance": {"none", "all"},
    "mongo.errors.tolerance": {"none", "all"},
    "document.id.strategy": {"com.mongodb.kafka.connect.sink.processor.id.strategy.ProvidedInValueStrategy"},
    "writemodel.strategy": {"com.mongodb.kafka.connect.sink.writemodel.strategy.ReplaceOneDefaultStrategy"},
    "storage.class": {"io.confluent.connect.s3.storage.S3Storage"},
    "format.class": {"io.confluent.connect.s3.format.bytearray.ByteArrayFormat"},
    "partitioner.class": {
        "io.confluent.connect.storage.partitioner.TimeBasedPartitioner",
        "io.confluent.connect.storage.partitioner.DefaultPartitioner",
    },
    "timestamp.extractor": {"Record", "Wallclock"},
    "behavior.on.null.values": {"ignore", "fail"},
}
RUNNER_VALUE_CONVERTER = {
    MONGO_SINK: {"org.apache.kafka.connect.json.JsonConverter"},
    S3_SINK: {"org.apache.kafka.connect.converters.ByteArrayConverter"},
}

_ALIAS = re.compile(r"^transforms\.([^.]+)\.(.+)$")


def transform_aliases(config: Mapping[str, str]) -> list[str]:
    return [a.strip() for a in str(config.get("transforms", "")).split(",") if a.strip()]


def check_options(config: Mapping[str, str]) -> list[str]:
    """Static check: every option name is documented for this connector class. Returns problems."""
    problems: list[str] = []
    cls = config.get("connector.class")
    if cls not in CONNECTOR_OPTIONS:
        return [
            f"connector.class: unknown or missing connector class {cls!r}; expected one of {sorted(CONNECTOR_OPTIONS)}"
        ]
    names, prefixes = CONNECTOR_OPTIONS[cls]
    aliases = transform_aliases(config)
    for key in config:
        m = _ALIAS.match(key)
        if m:
            alias, opt = m.groups()
            if alias not in aliases:
                problems.append(f"{key}: transform alias {alias!r} is not listed in 'transforms'")
                continue
            smt = config.get(f"transforms.{alias}.type")
            if smt not in SMT_OPTIONS:
                if opt == "type":
                    problems.append(
                        f"{key}: unknown transformation class {smt!r}; documented here: {sorted(SMT_OPTIONS)}"
                    )
                continue
            if opt not in SMT_OPTIONS[smt]:
                problems.append(f"{key}: {opt!r} is not an option of {smt} ({DOC_SOURCES[smt]})")
            continue
        if key in CONNECT_SINK_OPTIONS or key in names:
            continue
        if key.startswith(CONNECT_PREFIXES) or key.startswith(prefixes):
            continue
        problems.append(
            f"{key}: not a documented option of {cls} or of Kafka Connect sink connectors (see {DOC_SOURCES[cls]})"
        )
    for alias in aliases:
        if f"transforms.{alias}.type" not in config:
            problems.append(f"transforms.{alias}.type: required for transform alias {alias!r}")
    if "topics" in config and "topics.regex" in config:
        problems.append("topics, topics.regex: set exactly one of them")
    return problems


def unsupported_by_runner(config: Mapping[str, str]) -> list[str]:
    """Options (or option values) the Python runner does not implement, each named."""
    cls = config.get("connector.class")
    own = {MONGO_SINK: RUNNER_MONGO, S3_SINK: RUNNER_S3}.get(cls)
    if own is None:
        return [f"connector.class: the Python runner implements {MONGO_SINK} and {S3_SINK}, not {cls!r}"]
    out: list[str] = []
    for key, val in config.items():
        m = _ALIAS.match(key)
        if m:
            alias, opt = m.groups()
            smt = config.get(f"transforms.{alias}.type")
            if smt not in RUNNER_SMT:
                if opt == "type":
                    out.append(
                        f"{key}: transformation {val!r} is not implemented by the Python runner "
                        f"(implemented: {sorted(RUNNER_SMT)})"
                    )
            elif opt not in RUNNER_SMT[smt]:
                out.append(f"{key}: option {opt!r} of {smt} is not implemented by the Python runner")
            elif smt == TIMESTAMP_CONVERTER and opt == "target.type" and str(val) != "Timestamp":
                out.append(f"{key}: only target.type=Timestamp is implemented by the Python runner, got {val!r}")
            continue
        if key not in RUNNER_COMMON and key not in own:
            out.append(f"{key}: not implemented by the Python runner (see connectors/README.md, 'Runner subset')")
            continue
        allowed = RUNNER_VALUES.get(key)
        if key == "value.converter":
            allowed = RUNNER_VALUE_CONVERTER[cls]
        if allowed is not None and str(val) not in allowed:
            out.append(f"{key}: value {val!r} is not implemented by the Python runner (implemented: {sorted(allowed)})")
    if "value.converter.schemas.enable" not in config and cls == MONGO_SINK:
        out.append("value.converter.schemas.enable: must be set to false (schemaless JSON) for the Python runner")
    return out


def documented(names: Iterable[str], cls: str) -> dict[str, bool]:
    """For a report: name -> documented for ``cls``?"""
    return {n: not check_options({"connector.class": cls, n: "x"}) for n in names}
