"""The ``requests`` session voiceobs gives the SDK's OTLP/HTTP exporters when a CA is set.

The exporter puts ``OTEL_EXPORTER_OTLP_CERTIFICATE`` on its session (``session.verify``), but
``requests`` lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` replace a session's CA on every
request (psf/requests#4726), so on a host with such a bundle a private CA is silently ignored
and every export fails verification. This session keeps the CA it was given; proxies and the
rest of the environment still apply.
"""

from __future__ import annotations

from typing import Any

import requests


class CaKeepingSession(requests.Session):
    def merge_environment_settings(
        self,
        url: str,
        proxies: dict[str, str] | None,
        stream: bool | None,
        verify: bool | str | None,
        cert: Any,
    ) -> dict[str, Any]:
        merged = dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
        if verify is None and isinstance(self.verify, str):  # the CA set on the session wins
            merged["verify"] = self.verify
        return merged
