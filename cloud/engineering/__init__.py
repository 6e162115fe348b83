"""Post-ML data engineering on the cloud side.

* :mod:`.facts` - pure functions: detection event -> fact -> analytics documents;
* :mod:`.store` - MongoDB fact ledger + idempotent (recomputed, guarded) analytics writes;
* :mod:`.consumer` - their loop on :mod:`cloud.stream` (batch, write, DLQ, commit; SIGTERM-safe);
* :mod:`.engineering` - ``cloud-ops engineering run``;
* :mod:`.fleet` - the fleet registry from agent heartbeats (``cloud-ops fleet run|list``).
"""
