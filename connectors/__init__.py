"""Kafka Connect sink connectors for the warehouse (MongoDB) and keyframes (S3): the connector
files (production path, deployed with ``cloud-ops connectors deploy``), their documented option
lists (:mod:`connectors.options`), and a Python runner that executes the same files on one machine
(:mod:`connectors.runner`, ``cloud-ops connectors run``). See connectors/README.md."""
