"""Ray Serve's REST API (on the Ray dashboard address) and its HTTP proxy."""

from __future__ import annotations

from typing import Any

import httpx

from mlops.clients.ray_jobs import auth_headers


class ServeError(Exception):
    """Serve's REST API could not be reached or refused the configuration."""


class ServeAdmin:
    def __init__(self, http: httpx.AsyncClient, ray_address: str, token: str | None) -> None:
        self._http = http
        self._url = f"{ray_address.rstrip('/')}/api/serve/applications/"
        self._headers = auth_headers(token)

    async def apply(self, config: dict[str, Any]) -> None:
        """Declare the applications; an unchanged config changes nothing."""
        try:
            response = await self._http.put(
                self._url, json=config, headers=self._headers, timeout=60
            )
        except httpx.HTTPError as exc:
            raise ServeError(f"Ray at {self._url} is unreachable: {exc}") from exc
        if response.status_code != 200:
            raise ServeError(f"Serve refused the config ({response.status_code}): {response.text}")

    async def application(self, app_name: str) -> dict[str, Any] | None:
        """Serve's view of one application (status, deployed config, replicas), or None."""
        try:
            response = await self._http.get(self._url, headers=self._headers, timeout=10)
        except httpx.HTTPError as exc:
            raise ServeError(f"Ray at {self._url} is unreachable: {exc}") from exc
        if response.status_code in {401, 403}:
            raise ServeError("Ray refused the token (MLOPS_RAY_AUTH_TOKEN)")
        if response.status_code != 200:
            raise ServeError(f"Serve answered {response.status_code}: {response.text[:200]}")
        return (response.json().get("applications") or {}).get(app_name)

    async def status(self, app_name: str) -> str | None:
        """The application's status (RUNNING, DEPLOYING, …), or None if not deployed."""
        app = await self.application(app_name)
        return app["status"] if app else None
