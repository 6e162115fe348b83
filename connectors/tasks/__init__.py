"""The connector tasks the Python runner executes: handlers of the cloud consumer loop
(:mod:`cloud.stream`), one module per connector class."""

from .base import ConnectorMetrics, ConnectorTask, error_policy, topics_of
from .mongo import MongoSinkHandler
from .s3 import S3SinkHandler

__all__ = ["ConnectorMetrics", "ConnectorTask", "MongoSinkHandler", "S3SinkHandler", "error_policy", "topics_of"]
