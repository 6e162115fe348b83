"""Starting the TUI: in this terminal (:func:`run_terminal`) or served to browsers (:func:`serve_web`)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TextIO

from edgesight.log import get_logger, setup_logging

from .settings import OperatorConfig

PASSWORD_ENV = "EDGESIGHT_TUI_PASSWORD"
"""The operator's MQTT password; ``--web`` hands it to each browser session's process this way (never argv)."""


def run_terminal(config: OperatorConfig, log_file: Path | None) -> int:
    """Run the app in this terminal until ``q``; the MQTT client stops with it."""
    _log_to(log_file)
    from . import preview  # noqa: F401 - textual-image queries the terminal on import, before Textual owns it
    from .app import EdgeSightApp
    from .feed import MqttFeed
    from .state import SiteState

    state = SiteState(config.topic_root)
    feed = MqttFeed(config, state).start()
    try:
        EdgeSightApp(state, feed, title=f"EdgeSight {config.topic_root}").run()
    finally:
        feed.stop()
    return 0


def serve_web(config: OperatorConfig, host: str, port: int, log_file: Path | None) -> None:
    """Serve the app with textual-serve: every browser session runs ``edge-agent tui`` with the same options."""
    from textual_serve.server import Server

    _log_to(log_file, stream=sys.stderr)  # a server: JSON lines on stderr (textual-serve's own lines included)
    if config.password is not None:
        os.environ[PASSWORD_ENV] = config.password.get_secret_value()
    args = [sys.executable, "-m", "edge_agent.cli", "tui", *tui_args(config)]
    if log_file is not None:
        args += ["--log-file", str(log_file)]
    get_logger("tui").info("serving the TUI", extra={"url": f"http://{host}:{port}"})
    Server(shlex.join(args), host=host, port=port, title="EdgeSight").serve()


def tui_args(config: OperatorConfig) -> list[str]:
    """The command-line options that give ``config`` (the password travels in :data:`PASSWORD_ENV`)."""
    args = ["--mqtt-host", config.host, "--mqtt-port", str(config.port), "--topic-root", config.topic_root]
    if config.username:
        args += ["--username", config.username]
    if config.tls:
        args.append("--tls")
    for flag, path in (
        ("--ca-file", config.ca_file),
        ("--cert-file", config.cert_file),
        ("--key-file", config.key_file),
    ):
        if path is not None:
            args += [flag, str(path)]
    return args


def _log_to(log_file: Path | None, stream: TextIO | None = None) -> None:
    """JSON log lines go to ``log_file``, else to ``stream``, else nowhere (the terminal is the app's)."""
    if log_file is None:
        if stream is not None:
            setup_logging("INFO", stream=stream, service="edge-agent-tui")
        else:
            setup_logging("WARNING", stream=open(os.devnull, "w"), service="edge-agent-tui")
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    setup_logging("INFO", stream=open(log_file, "a", encoding="utf-8"), service="edge-agent-tui")
