"""Shared fixtures: a private embedded cloud stack (real servers on free 127.0.0.1 ports).

``stack`` is session-scoped: one SeaweedFS + Tansu + nx-27017 + mosquitto for the
whole run, torn down at the end (nothing is left running). It is secure, as the
default embedded stack is: Kafka over TLS (haproxy in front of Tansu), MQTT over
TLS with per-identity logins and ACLs, S3 over HTTPS with per-identity keys.
``cloud_config`` (= ``stack.config``) carries the stack's own ``stack-admin``
client settings (ops role) and the CA; build clients from it
(:mod:`ops.testing.clients`), and an edge agent with :func:`tests.agents.agent_config`
(its own agent identity). Tests that must kill or restart servers start their own
with :func:`ops.testing.make_stack`.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from cloud.config import CloudConfig
from edgesight.log import setup_logging
from edgesight.samples import VTEST
from ops.stack import Stack
from ops.testing import make_stack
from tests.secrets_audit import (  # noqa: F401 - the secrets audit's hooks
    pytest_configure,
    pytest_sessionfinish,
    tee_kafka,
    tee_mqtt,
)


@pytest.fixture(scope="session", autouse=True)
def _logging():
    setup_logging("INFO")


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    st = make_stack(tmp_path_factory.mktemp("stack"))  # secure, like the default stack: TLS, per-identity logins
    st.up()
    stop_audit = tee_mqtt(st.config.mqtt)  # the stack's own stack-admin (ops role: reads #)
    yield st
    stop_audit()
    try:
        tee_kafka(st.config.kafka.client_config())
    finally:
        st.down()


@pytest.fixture(scope="session")
def cloud_config(stack) -> CloudConfig:
    """A CloudConfig pointed at the session stack."""
    return stack.config


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic prefix per test, so tests sharing the broker never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    assert VTEST.exists(), f"{VTEST} missing: apt-get install opencv-doc (see Makefile)"
    return VTEST


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A model store with yolov4-tiny imported (fp32) and compressed (int8), built once per session.

    ``EDGESIGHT_TEST_MODEL_DIR`` points at an already-built store instead (local iterations only;
    CI always builds from the darknet files).
    """
    import os

    pre = os.environ.get("EDGESIGHT_TEST_MODEL_DIR")
    if pre:
        return Path(pre)
    from model_zoo.compress import Int8Config, calibration_frames, compress
    from model_zoo.registry import Registry

    store = tmp_path_factory.mktemp("models")
    reg = Registry(store)
    sm = reg.import_darknet("yolov4-tiny")
    compress(sm, ["int8"], Int8Config(), frames=calibration_frames(Int8Config().calib_video_frames))
    return store


# Fixtures that start servers (the embedded stack, RTSP and MJPEG sources). A test that needs one, directly or
# through another fixture, is marked `stack`; `-m 'not stack'` is the fast loop that starts none.
SERVER_FIXTURES = frozenset({"stack", "cloud_config", "outage_stack", "rtsp_server", "mjpeg_server"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark server tests ``stack``; leave ``slow`` tests out unless the ``-m`` expression names them."""
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)
    if "slow" not in config.getoption("markexpr"):
        slow = [item for item in items if item.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("slow")]
