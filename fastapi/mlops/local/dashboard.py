"""The dashboard for `make up`: nginx with the image's own server block when nginx is
installed, else this small static server with the same /api/ proxying.

    python -m uvicorn mlops.local.dashboard:app   (MLOPS_* settings as everywhere)
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mlops.settings.platform import PlatformSettings

# Headers a proxy must not pass on (hop-by-hop), plus the body length it recomputes.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}

# Paths are quoted: a clone's folder may have spaces in its name.
_MAIN_CONFIG = """\
# One worker per core: a thousand alert streams fan one alert into a thousand writes.
{user}worker_processes auto;
# Each proxied alert stream holds two connections (the browser's, the API's).
worker_rlimit_nofile 20000;
pid "{run}/nginx.pid";
error_log "{logs}/nginx-error.log" warn;
events {{ worker_connections 10000; }}
http {{
    types {{
        text/html html; text/css css; application/javascript js;
        application/json json map; image/svg+xml svg; image/png png;
    }}
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path "{run}/body";
    proxy_temp_path "{run}/proxy";
    fastcgi_temp_path "{run}/fastcgi";
    uwsgi_temp_path "{run}/uwsgi";
    scgi_temp_path "{run}/scgi";
{server}
}}
"""


def frontend_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "frontend"


def assets_missing() -> str | None:
    """Why the dashboard cannot be served, or None when it can."""
    if not (frontend_dir() / "vendor" / "chart.umd.min.js").exists():
        return "its chart library is not built: run `make dashboard` (needs Node.js and npm)"
    return None


def _worker_user(root: Path) -> str:
    """nginx started by root runs its workers as `nobody`, who cannot read a checkout
    in a private folder (a clone under /root, mode 700): there, the workers run as the
    owner of the files they serve. Started by anyone else, nginx cannot switch users."""
    if os.geteuid() != 0:
        return ""
    owner = root.stat()
    return f"user {pwd.getpwuid(owner.st_uid).pw_name} {grp.getgrgid(owner.st_gid).gr_name};\n"


def nginx_config(settings: PlatformSettings, api_url: str, root: Path | None = None) -> Path:
    """Render frontend/nginx.conf into a complete config under the data folder."""
    root = root or frontend_dir()
    run = settings.data_dir / "nginx"
    logs = settings.data_dir / "logs"
    for folder in (run, logs):
        folder.mkdir(parents=True, exist_ok=True)
    server = (root / "nginx.conf").read_text()
    for name, value in {
        "DASHBOARD_PORT": f"127.0.0.1:{settings.dashboard_port}",
        "DASHBOARD_ROOT": _in_quotes(root),
        "MLOPS_API_UPSTREAM": api_url,
        "DASHBOARD_CLIENT_CONNECTIONS": str(settings.dashboard_client_connections),
    }.items():
        server = server.replace(f"${{{name}}}", value)
    config = run / "nginx.conf"
    user = _worker_user(root)
    config.write_text(
        _MAIN_CONFIG.format(user=user, run=_in_quotes(run), logs=_in_quotes(logs), server=server)
    )
    return config


def _in_quotes(path: Path) -> str:
    """`path` as it goes between an nginx config's double quotes."""
    return str(path).replace("\\", "\\\\").replace('"', '\\"')


def create_app(settings: PlatformSettings | None = None) -> Starlette:
    settings = settings or PlatformSettings()
    upstream = f"http://{settings.api_host}:{settings.api_port}"

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            base_url=upstream, timeout=httpx.Timeout(30, read=None)
        ) as client:
            app.state.client = client
            yield

    async def proxy(request: Request) -> StreamingResponse:
        client: httpx.AsyncClient = request.app.state.client
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        outgoing = client.build_request(
            request.method,
            "/" + request.path_params["path"],
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
        response = await client.send(outgoing, stream=True)  # SSE flows through unbuffered
        kept = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            headers=kept,
            background=BackgroundTask(response.aclose),
        )

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(
        routes=[
            Route("/api/{path:path}", proxy, methods=methods),
            Mount("/", StaticFiles(directory=frontend_dir(), html=True)),
        ],
        lifespan=lifespan,
    )


def app() -> Starlette:
    """Factory for uvicorn --factory."""
    return create_app()
