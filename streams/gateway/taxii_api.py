"""TAXII 2.1 endpoints: discovery, the API root, the recipient's one collection, its objects,
one object and its versions, and the manifest. Read-only (`can_write: false`).

Every response is `application/taxii+json;version=2.1`; a request whose Accept header does
not allow it gets 406. Another recipient's collection is 404, exactly like one that does not
exist (the specification allows either 403 or 404; 404 tells nothing about other recipients).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from threatroute.streams.gateway import taxii
from threatroute.streams.gateway.auth import Refused
from threatroute.streams.gateway.services import Me, Services, Svc

API_ROOT = "alerts"
_ACCEPTED = ("application/taxii+json", "application/*", "*/*")


def accept_taxii(request: Request) -> None:
    """406 unless the Accept header allows TAXII 2.1 (a missing header allows anything)."""
    for media_range in request.headers.get("accept", "*/*").split(","):
        kind, *params = [p.strip().lower() for p in media_range.split(";")]
        versions = [p.split("=", 1)[1].strip() for p in params if p.startswith("version=")]
        if kind in _ACCEPTED and all(v == "2.1" for v in versions):
            return
    raise Refused(406, "Not Acceptable", f"this server speaks {taxii.TAXII_MEDIA}")


router = APIRouter(prefix="/taxii2", include_in_schema=False,
                   dependencies=[Depends(accept_taxii)])


def reply(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, media_type=taxii.TAXII_MEDIA, headers=headers)


def _base(request: Request, svc: Services) -> str:
    return svc.config.gateway.public_url or str(request.base_url).rstrip("/")


def _collection(recipient: str, svc: Services) -> dict[str, Any]:
    name = svc.directory.recipients[recipient].name if recipient in svc.directory.recipients \
        else recipient
    return {"id": taxii.collection_id(recipient), "title": f"threatroute alerts for {name}",
            "description": f"The alerts threatroute sent to {recipient}, as STIX 2.1",
            "can_read": True, "can_write": False, "media_types": [taxii.STIX_MEDIA]}


def _objects(recipient: str, collection: str, svc: Services) -> list[taxii.TaxiiObject]:
    if collection != taxii.collection_id(recipient):
        raise Refused(404, "Collection not found", "no such collection for your credentials")
    book = svc.store.book(recipient)
    with book.lock:
        return list(book.objects)


def _query(request: Request, svc: Services) -> taxii.Query:
    try:
        return taxii.parse_query(dict(request.query_params), svc.config.gateway.max_page)
    except taxii.QueryError as exc:
        raise Refused(400, "Bad request", str(exc)) from None


def _served(svc: Services, recipient: str, page: taxii.Page) -> None:
    svc.metrics.delivery_sent.labels("taxii", recipient).inc(len(page.items))


@router.get("/")
def discovery(request: Request, recipient: Me, svc: Svc) -> JSONResponse:
    root = f"{_base(request, svc)}/taxii2/{API_ROOT}/"
    return reply({"title": "threatroute", "description": "Alerts routed to you by threatroute",
                  "default": root, "api_roots": [root]})


@router.get("/{api_root}/")
def api_root(api_root: str, recipient: Me) -> JSONResponse:
    if api_root != API_ROOT:
        raise Refused(404, "API root not found")
    return reply({"title": "threatroute alerts", "versions": [taxii.TAXII_MEDIA],
                  "max_content_length": 1 << 20})


@router.get(f"/{API_ROOT}/collections/")
def collections(recipient: Me, svc: Svc) -> JSONResponse:
    return reply({"collections": [_collection(recipient, svc)]})


@router.get(f"/{API_ROOT}/collections/{{collection}}/")
def collection(collection: str, recipient: Me, svc: Svc) -> JSONResponse:
    if collection != taxii.collection_id(recipient):
        raise Refused(404, "Collection not found", "no such collection for your credentials")
    return reply(_collection(recipient, svc))


@router.get(f"/{API_ROOT}/collections/{{collection}}/objects/")
def objects(collection: str, request: Request, recipient: Me, svc: Svc) -> JSONResponse:
    page = taxii.select(_objects(recipient, collection, svc), _query(request, svc))
    _served(svc, recipient, page)
    return reply(taxii.envelope(page), page.headers())


@router.get(f"/{API_ROOT}/collections/{{collection}}/manifest/")
def manifest(collection: str, request: Request, recipient: Me, svc: Svc) -> JSONResponse:
    page = taxii.select(_objects(recipient, collection, svc), _query(request, svc))
    return reply(taxii.manifest(page), page.headers())


@router.get(f"/{API_ROOT}/collections/{{collection}}/objects/{{object_id}}/")
def one_object(collection: str, object_id: str, request: Request,
               recipient: Me, svc: Svc) -> JSONResponse:
    mine = [o for o in _objects(recipient, collection, svc) if o.obj.get("id") == object_id]
    if not mine:
        raise Refused(404, "Object not found")
    page = taxii.select(mine, _query(request, svc))
    _served(svc, recipient, page)
    return reply(taxii.envelope(page), page.headers())


@router.get(f"/{API_ROOT}/collections/{{collection}}/objects/{{object_id}}/versions/")
def object_versions(collection: str, object_id: str, request: Request,
                    recipient: Me, svc: Svc) -> JSONResponse:
    mine = [o for o in _objects(recipient, collection, svc) if o.obj.get("id") == object_id]
    if not mine:
        raise Refused(404, "Object not found")
    query = _query(request, svc)
    page = taxii.select(mine, taxii.Query(query.added_after, query.limit, query.after,
                                          versions=("all",)))
    return reply(taxii.versions(page), page.headers())
