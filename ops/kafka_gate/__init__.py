"""Kafka authorization gate for the embedded broker (issue #12): Tansu 0.6 has no working SCRAM and no ACLs.

haproxy terminates TLS, requires a client certificate signed by the stack CA and opens a connection to the
gate with a PROXY protocol v2 header carrying the certificate's CN (``send-proxy-v2-ssl-cn``)::

    frontend kafka_tls
      bind 127.0.0.1:9093 ssl crt <server bundle> ca-file <stack CA> verify required
      default_backend gate
    backend gate
      server gate 127.0.0.1:<gate port> send-proxy-v2-ssl-cn

The CN is the identity name; the gate (``python -m ops.kafka_gate --listen H:P --upstream H:Q --acls FILE
[--metrics-port M] [--log-level info]``) authorizes every Kafka request against that identity's rules
(the ACL file, :mod:`.acl`, written by :func:`write_acl_file` from :mod:`ops.kafka_acls`, re-read when it
changes: a removed identity is refused at its next connect and its open connections are closed) and
forwards it to Tansu.

Enforced (Apache Kafka's authorizer operations): Produce Write per topic (and Write on the transactional
id), Fetch Read, ListOffsets Describe, OffsetCommit Read on group and topics, OffsetFetch / DescribeGroups
Describe on the group(s), JoinGroup / Heartbeat / LeaveGroup / SyncGroup Read, DeleteGroups and
OffsetDelete Delete on the group, ListGroups Describe on every group (a ``*`` rule), CreateTopics Create,
DeleteTopics / DeleteRecords Delete, InitProducerId IdempotentWrite on the cluster (or Write on some topic,
as Kafka allows since KIP-679) or Write on the transactional id, DescribeConfigs DescribeConfigs,
AlterConfigs / IncrementalAlterConfigs AlterConfigs, CreatePartitions Alter. Always allowed: ApiVersions,
Metadata (which may only auto-create topics the identity may create: otherwise the gate clears the flag),
FindCoordinator, DescribeCluster. SASL is refused (identities come from certificates). Any other API needs
a cluster ``All`` rule.

Topic ids: the gate lowers the broker's ApiVersions answer to the versions it parses (Fetch 12,
DeleteTopics 5, ... :data:`.requests.MAX_VERSION`), so clients always name topics, and leaves out the APIs
it does not parse (transactions, ACL and SCRAM admin, client telemetry...) unless the identity has a cluster
``All`` rule, so clients do not try them; a request above those versions is refused. Refusals:
:mod:`.refusals` (an error answer the client acts on, in request order; the connection is closed for APIs
without one). Metrics: ``edgesight_kafka_gate_*`` (connections by outcome,
requests by API and verdict, bytes each way, open connections).

Not covered: topic names in Metadata answers are not filtered (Kafka hides topics the identity may not
describe); OffsetFetch does not check Describe on the topics whose offsets it reads; DescribeConfigs and
AlterConfigs on group or client-metrics resources are refused; a request is refused whole (see
:mod:`.refusals` for what the allowed part of a mixed request gets). A Produce frame is read whole before it
is forwarded (its topic names are spread between the record batches); answers are streamed in 1 MiB chunks.
"""

from .acl import acl_document, role_acls, write_acl_file

__all__ = ["acl_document", "role_acls", "write_acl_file"]
