"""The gateway's ASGI application: TAXII 2.1, the feedback API (OpenAPI at
/api/v1/openapi.json), contributions and the desk page, with per-recipient tokens."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from threatroute.streams.gateway import api, desk, taxii, taxii_api
from threatroute.streams.gateway.auth import Refused
from threatroute.streams.gateway.services import Services

log = logging.getLogger(__name__)


def _path(url_path: str) -> str:
    """The delivery path a request belongs to (a metrics label)."""
    if url_path.startswith("/taxii2"):
        return "taxii"
    if url_path.startswith("/api/"):
        return "api"
    return "page" if url_path.startswith("/desk") or url_path == "/" else "other"


def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    path = _path(request.url.path)
    if path == "taxii":
        return JSONResponse(taxii.error(exc.title, exc.status, exc.description), exc.status,
                            headers=exc.headers(), media_type=taxii.TAXII_MEDIA)
    if path == "page":
        return HTMLResponse(f"<!doctype html><title>{exc.status}</title><h1>{exc.title}</h1>",
                            exc.status, headers=exc.headers())
    return JSONResponse({"detail": exc.description or exc.title}, exc.status,
                        headers=exc.headers())


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(title="threatroute gateway",
                  summary="Your threatroute alerts, and your answers to them",
                  description="Authenticate with HTTP Basic (your recipient id and gateway "
                              "token) or the token as a bearer token. TAXII 2.1 at /taxii2/, "
                              "the desk page at /desk.",
                  version="1", openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs",
                  redoc_url=None)
    app.state.services = svc
    app.add_exception_handler(Refused, refused)
    app.include_router(taxii_api.router)
    app.include_router(api.router)
    app.include_router(desk.router)

    @app.middleware("http")
    async def measure(request: Request,
                      call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        path = _path(request.url.path)
        try:
            response = await call_next(request)
        except Exception:
            svc.metrics.gateway_requests.labels(path, "500").inc()
            raise
        svc.metrics.gateway_requests.labels(path, str(response.status_code)).inc()
        if response.status_code >= 500:
            svc.metrics.delivery_failed.labels(path, "").inc()
        svc.metrics.delivery_latency.labels(path).observe(time.perf_counter() - started)
        return response

    return app
