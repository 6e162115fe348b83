from __future__ import annotations

from botocore.exceptions import ClientError

from .base import BatchingSink, FlushResult, Item


class S3Sink(BatchingSink):
    """Objects ``(key, body, content_type, metadata)`` put one request each on ``flush``.
    Keys are deterministic, so a replay after a crash overwrites identical objects.
    A 4xx from S3 for one object is a per-item failure; anything else raises."""

    def __init__(self, client, bucket: str):
        super().__init__()
        self.client = client
        self.bucket = bucket

    def _write(self, items: list[Item]) -> FlushResult:
        res = FlushResult()
        for it in items:
            key, body, content_type, metadata = it.payload
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, Metadata=metadata or {}
                )
                res.written += 1
            except ClientError as e:
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if 400 <= status < 500 and status not in (403, 404, 408, 429):
                    res.failed.append((it, e))
                else:
                    raise
        return res
