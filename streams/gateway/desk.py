"""A plain web page for an abuse desk: its open alerts, what each is and why it was sent, and
a button per answer. Same credentials as the API (the browser asks for them: HTTP Basic with
the recipient id and token). Forms carry a token only this gateway can make, so another site
cannot post answers with the browser's remembered credentials.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from threatroute.errors import InvalidRecord
from threatroute.streams.gateway.auth import Refused
from threatroute.streams.gateway.services import OPEN, Me, Services, Svc
from threatroute.streams.gateway.store import WriteError

ANSWERS = (("acknowledged", "Acknowledged"), ("remediated", "Remediated"),
           ("false_positive", "False positive"), ("not_ours", "Not ours"),
           ("wont_fix", "Won't fix"))
_templates = Environment(loader=PackageLoader("threatroute.streams.gateway", "templates"),
                         autoescape=select_autoescape(["html"]))
router = APIRouter(include_in_schema=False)


def _page(request: Request, recipient: str, svc: Services, state: str,
          only: str | None = None, answered: dict[str, str] | None = None) -> HTMLResponse:
    book = svc.store.book(recipient)
    with book.lock:
        latest = sorted(book.latest.values(), key=lambda s: (s.timestamp_ms, s.offset),
                        reverse=True)
    alerts = [svc.summary(sent) for sent in latest]
    if only is not None:
        alerts = [a for a in alerts if a["alert_id"] == only]
        what = "One alert"
    elif state == "open":
        alerts = [a for a in alerts if a["status"] in OPEN]
        what = f"{len(alerts)} open alerts"
    else:
        what = f"{len(alerts)} alerts"
    alerts = alerts[:svc.config.gateway.max_page]
    svc.metrics.delivery_sent.labels("page", recipient).inc(len(alerts))
    known = svc.directory.recipients.get(recipient)
    html = _templates.get_template("desk.html").render(
        name=known.name if known else recipient, what=what, alerts=alerts, answers=ANSWERS,
        csrf=svc.csrf(recipient), base=str(request.base_url).rstrip("/"), only=only,
        answered=answered)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.get("/", response_class=RedirectResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/desk", status_code=303)


@router.get("/desk", response_class=HTMLResponse)
def desk(request: Request, recipient: Me, svc: Svc,
         state: Annotated[str, Query(pattern="^(open|all)$")] = "open",
         answered: Annotated[str | None, Query(max_length=256)] = None,
         status: Annotated[str | None, Query(max_length=32)] = None) -> HTMLResponse:
    done = {"alert_id": answered, "status": status} if answered and status else None
    return _page(request, recipient, svc, state, answered=done)


@router.get("/desk/alerts/{alert_id}", response_class=HTMLResponse)
def desk_alert(alert_id: str, request: Request, recipient: Me, svc: Svc) -> HTMLResponse:
    if alert_id not in svc.store.book(recipient).latest:
        raise Refused(404, "Not found", "no such alert among yours")
    return _page(request, recipient, svc, "all", only=alert_id)


@router.post("/desk/answer")
def desk_answer(alert_id: Annotated[str, Form(max_length=256)],
                status: Annotated[str, Form(max_length=32)],
                csrf: Annotated[str, Form(max_length=128)],
                recipient: Me,
                svc: Svc) -> RedirectResponse:
    if not hmac.compare_digest(csrf, svc.csrf(recipient)):
        raise Refused(403, "Forbidden", "the form is not one this gateway gave you")
    if status not in dict(ANSWERS) or alert_id not in svc.store.book(recipient).latest:
        raise Refused(404, "Not found", "no such alert or answer")
    try:
        svc.answer(recipient, alert_id, status, None, "page")
    except InvalidRecord as exc:
        raise Refused(422, "Unprocessable", exc.reason) from None
    except WriteError:
        raise Refused(503, "Service unavailable", "try again") from None
    return RedirectResponse(f"/desk?answered={alert_id}&status={status}", status_code=303)
