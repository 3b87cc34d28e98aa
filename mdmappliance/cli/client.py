"""The admin API client the command line uses (standard library only: it starts fast)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


class APIError(Exception):
    """One line for the admin: what the API (or the connection to it) said; ``status`` is the
    API's HTTP status (None when it did not answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AdminClient:
    def __init__(
        self, base_url: str, key: str, timeout: float = 30.0, ca_file: Path | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.context: ssl.SSLContext | None = None
        if base_url.startswith("https:"):
            # The system's CAs and the appliance CA; the admin API is reached by address
            # (often 127.0.0.1), which the certificate does not name, so the chain is
            # checked but not the name.
            self.context = ssl.create_default_context()
            if ca_file is not None:
                self.context.load_verify_locations(cafile=str(ca_file))
            self.context.check_hostname = False

    @classmethod
    def from_config(cls, config_path: str) -> AdminClient:
        from mdmappliance.config import load_config

        config = load_config(config_path)
        return cls(config.admin_url(), config.read_admin_api_key(), ca_file=config.pki.ca_cert)

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        params = {k: v for k, v in query.items() if v is not None}
        url = self.base_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self.context
            ) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise APIError(_error_line(e.code, e.read()), e.code) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise APIError(
                f"the appliance at {self.base_url} does not answer ({reason}); is it running?"
            ) from None


def _error_line(status: int, raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return f"HTTP {status}"
    if isinstance(body, dict):
        errors = body.get("errors") or ([body["error"]] if body.get("error") else [])
        if errors:
            return "; ".join(str(e) for e in errors)
    return f"HTTP {status}"
