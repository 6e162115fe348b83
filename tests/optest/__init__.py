"""Tests of the operator's tests (``cloud-ops test ...``, issue #14) against the session's real stack."""
