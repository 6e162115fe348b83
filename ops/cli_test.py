"""``cloud-ops test``: the operator's tests against the embedded stack or a production cluster (issue #14).

Each command lives with its logic in :mod:`ops.optest` and is registered here.
"""

from __future__ import annotations

import typer

from ops.optest.brokers_cli import brokers_command
from ops.optest.retention_cli import retention_command
from ops.optest.scale_cli import scale_command

test_app = typer.Typer(
    help="The operator's tests: multi-broker failover (brokers), retention per layer (retention), "
    "scaling curves (scale).",
    no_args_is_help=True,
)
test_app.command("brokers")(brokers_command)
test_app.command("retention")(retention_command)
test_app.command("scale")(scale_command)
