"""EdgeSight core: the pieces every process shares.

- :mod:`edgesight.wire`    -- the versioned wire contract (edge and cloud use the same models)
- :mod:`edgesight.config`  -- YAML configuration validated into typed models
- :mod:`edgesight.kafka`   -- Kafka settings, client defaults, topic specs and ``ensure_topics``
- :mod:`edgesight.log`     -- structured JSON-lines logging with secret redaction
- :mod:`edgesight.metrics` -- Prometheus metrics helpers
"""

__version__ = "0.1.0"
