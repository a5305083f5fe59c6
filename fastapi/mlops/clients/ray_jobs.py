"""Ray's Jobs REST API on the dashboard address.

Plain HTTP, never a Ray Client (ray://) connection, so the API is the same against a
local head and a KubeRay cluster, and needs no Ray runtime of its own.
"""

from __future__ import annotations

from typing import Any

import httpx


class RayJobsError(Exception):
    """Ray's Jobs API could not be reached or refused the request."""


class SubmissionUnconfirmed(RayJobsError):
    """The submission reached Ray but no answer came back: Ray may be running the job."""


def auth_headers(token: str | None) -> dict[str, str]:
    """What Ray's token authentication (RAY_AUTH_MODE=token) asks of every call."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class RayJobsClient:
    def __init__(self, http: httpx.AsyncClient, address: str, token: str | None) -> None:
        self._http = http
        self._base = address.rstrip("/")
        self._headers = auth_headers(token)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(
                method, f"{self._base}{path}", headers=self._headers, **kwargs
            )
        except httpx.HTTPError as exc:
            raise RayJobsError(f"Ray at {self._base} is unreachable: {exc}") from exc
        return response

    async def submit(
        self,
        *,
        submission_id: str,
        entrypoint: str,
        env_vars: dict[str, str],
        metadata: dict[str, str],
        num_cpus: float = 1,
        python: str | None = None,
    ) -> None:
        """`python`: the command that starts the job's Ray worker processes (its
        supervisor's included), such as `nice -n 10 python`; Ray's own when None."""
        runtime_env: dict[str, object] = {"env_vars": env_vars}
        if python is not None:
            runtime_env["py_executable"] = python
        body = {
            "submission_id": submission_id,
            "entrypoint": entrypoint,
            "runtime_env": runtime_env,
            "metadata": metadata,
            "entrypoint_num_cpus": num_cpus,
        }
        try:
            response = await self._http.post(
                f"{self._base}/api/jobs/", json=body, headers=self._headers
            )
        except httpx.ConnectError as exc:  # nothing was sent
            raise RayJobsError(f"Ray at {self._base} is unreachable: {exc}") from exc
        except httpx.HTTPError as exc:
            raise SubmissionUnconfirmed(
                f"Ray did not confirm job {submission_id}: {type(exc).__name__}"
            ) from exc
        if response.status_code != 200:
            raise RayJobsError(f"Ray refused the job ({response.status_code}): {response.text}")

    async def info(self, submission_id: str) -> dict[str, Any] | None:
        response = await self._request("GET", f"/api/jobs/{submission_id}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RayJobsError(f"Ray job lookup failed ({response.status_code}): {response.text}")
        return response.json()

    async def stop(self, submission_id: str) -> None:
        """Ask Ray to stop a job (a no-op for one that has ended)."""
        response = await self._request("POST", f"/api/jobs/{submission_id}/stop")
        if response.status_code not in {200, 404}:
            raise RayJobsError(f"Ray did not stop {submission_id} ({response.status_code})")

    async def node_resources(self) -> list[dict[str, float]]:
        """The resources of each live node (the dashboard's node summary): CPU, memory
        and the custom ones that mark trainer and serving nodes."""
        response = await self._request("GET", "/nodes", params={"view": "summary"})
        if response.status_code != 200:
            raise RayJobsError(f"Ray's node summary failed ({response.status_code})")
        nodes = response.json().get("data", {}).get("summary", [])
        return [
            {name: float(value) for name, value in node["raylet"].get("resourcesTotal", {}).items()}
            for node in nodes
            if node.get("raylet", {}).get("state") == "ALIVE"
        ]

    async def version(self) -> str:
        response = await self._request("GET", "/api/version")
        if response.status_code == 401:
            raise RayJobsError("Ray refused the token (MLOPS_RAY_AUTH_TOKEN)")
        response.raise_for_status()
        return response.json()["ray_version"]
