"""Deploy (or update) the Ray Serve application of every model and exit once it is healthy.

    python fastapi/serve.py                       # locally, after `make up`
    kubectl exec -it <api-pod> -n fastapi -- python /var/task/fastapi/serve.py

Talks to Serve's REST API at MLOPS_RAY_ADDRESS; running it again changes nothing.
"""

import asyncio
import logging
import sys

import httpx

from mlops import logs
from mlops.clients.serve_admin import ServeAdmin, ServeError
from mlops.services.serve_deployment import deploy
from mlops.settings.api import ApiSettings

log = logging.getLogger("mlops.serve")


async def _deploy(settings: ApiSettings) -> str:
    async with httpx.AsyncClient() as http:
        admin = ServeAdmin(http, settings.ray_address, settings.ray_token())
        return await deploy(admin, settings)


def main() -> int:
    logs.configure("console")
    settings = ApiSettings()
    try:
        url = asyncio.run(_deploy(settings))
    except ServeError as exc:
        log.error("serving is not up: %s", exc)
        return 1
    log.info("serving every model at POST %s", url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
