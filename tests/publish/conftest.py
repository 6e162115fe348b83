"""Fixtures for the publish tests: a publisher config on the shared stack, and a private
stack whose broker the outage / SIGKILL tests may stop and restart."""

from __future__ import annotations

import pytest

from edge_agent.publish import PublishConfig, edge_topic_specs
from edgesight.kafka import KafkaConfig, ensure_topics
from ops.testing import make_stack
from ops.testing.clients import kafka_link
from ops.testing.publish import BrokerControl


def publish_config(kafka: KafkaConfig, prefix: str, spool_dir, **kw) -> PublishConfig:
    """A publisher on the broker ``kafka`` points at (its address, TLS and CA), under ``prefix``."""
    spool = {"dir": str(spool_dir), **kw.pop("spool", {})}
    return PublishConfig(kafka={**kafka_link(kafka), "client_id": "edge-test"}, topic_prefix=prefix, spool=spool, **kw)


@pytest.fixture
def pub_config(stack, topic_prefix, tmp_path) -> PublishConfig:
    cfg = publish_config(stack.config.kafka, topic_prefix, tmp_path / "spool")
    ensure_topics(cfg.kafka.client_config(), edge_topic_specs(cfg, partitions=3))
    return cfg


@pytest.fixture(scope="session")
def outage_stack(tmp_path_factory):
    """A private stack (durable s3 broker storage) for tests that kill the broker."""
    st = make_stack(tmp_path_factory.mktemp("outage-stack"))
    st.up()
    yield st
    st.down()


@pytest.fixture
def broker(outage_stack):
    """Stop/start control of the private stack's broker; always running again after the test."""
    ctl = BrokerControl(outage_stack)
    yield ctl
    if ctl.frozen:
        ctl.thaw()
    if not _kafka_alive(outage_stack):
        ctl.start()


def _kafka_alive(st) -> bool:
    try:
        st._probe_kafka()
        return True
    except Exception:  # noqa: BLE001
        return False
