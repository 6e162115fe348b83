"""The operator's tests against a running stack (``cloud-ops test ...``, issue #14).

One module per test, each with a small interface: a ``run_*`` function that returns a report (a dataclass or
a dict that serialises to JSON) and takes a ``progress`` callback; the typer command in :mod:`ops.cli_test`
only parses options, prints the report and writes its files.

- :mod:`ops.optest.brokers`: several brokers, each a node in its own network namespace, through a SIGKILL and
  a link down (acknowledged vs landed, failover time, throughput before/during/after);
- :mod:`ops.optest.retention`: per layer that keeps data, configured / enforced / by whom;
- :mod:`ops.optest.scale`: vertical and horizontal scaling curves of each service (table, JSON, PNG).
"""
