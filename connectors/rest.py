"""A small client for the Kafka Connect REST API (the production path for the connector files)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ConnectError(RuntimeError):
    """The Connect REST API refused a request or could not be reached; the message says which and why."""

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__(message)


class ConnectClient:
    def __init__(self, url: str, timeout: float = 15.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _req(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                msg = json.loads(raw).get("message", raw.decode(errors="replace"))
            except (ValueError, AttributeError):
                msg = raw.decode(errors="replace")
            raise ConnectError(f"{method} {self.url}{path}: HTTP {e.code}: {msg}", e.code) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ConnectError(
                f"{method} {self.url}{path}: Kafka Connect REST API not reachable ({reason}); "
                f"check --connect-url / EDGESIGHT_CONNECT_URL"
            ) from None

    @staticmethod
    def _q(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    def validate(self, connector_class: str, config: dict[str, str]) -> dict:
        """PUT /connector-plugins/{class}/config/validate: the plugin's own check of every option."""
        cls = connector_class.rsplit(".", 1)[-1]
        return self._req("PUT", f"/connector-plugins/{self._q(cls)}/config/validate", config)

    def deploy(self, name: str, config: dict[str, str]) -> dict:
        """PUT /connectors/{name}/config: create or update (idempotent)."""
        return self._req("PUT", f"/connectors/{self._q(name)}/config", config)

    def status(self, name: str) -> dict:
        return self._req("GET", f"/connectors/{self._q(name)}/status")

    def pause(self, name: str) -> None:
        self._req("PUT", f"/connectors/{self._q(name)}/pause")

    def resume(self, name: str) -> None:
        self._req("PUT", f"/connectors/{self._q(name)}/resume")

    def delete(self, name: str) -> None:
        self._req("DELETE", f"/connectors/{self._q(name)}")

    def list(self) -> list[str]:
        return self._req("GET", "/connectors")


def validation_errors(result: dict) -> list[str]:
    """Flatten Connect's validate response into 'option: message' lines."""
    out = []
    for item in (result or {}).get("configs", []):
        v = item.get("value", {})
        for msg in v.get("errors", []) or []:
            out.append(f"{v.get('name')}: {msg}")
    return out
