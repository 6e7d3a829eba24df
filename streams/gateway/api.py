"""The feedback API (described by the served OpenAPI document): list your alerts, read one,
post a status for one, and contribute indicators. Identity comes from the credentials, never
from a body: an alert that was not sent to you is 404, whoever it was sent to.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from threatroute import topics
from threatroute.outcomes import STATUSES
from threatroute.streams.gateway.auth import Refused
from threatroute.streams.gateway.services import OPEN, Me, Svc
from threatroute.streams.gateway.store import WriteError
from threatroute.streams.kafka.clients import encode

Status = Literal["acknowledged", "in_progress", "remediated", "false_positive", "not_ours",
                 "wont_fix"]
assert set(Status.__args__) == set(STATUSES)  # type: ignore[attr-defined]  # one vocabulary
ALERT_ID = r"^[A-Za-z0-9_-]{22,256}$"
MAX_RECORDS = 1000
MAX_RECORD_BYTES = 1 << 20
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "the body is not JSON"},
    401: {"description": "missing or wrong credentials"},
    413: {"description": "too many records, or one too large"},
    404: {"description": "no such alert among yours"},
    429: {"description": "rate limit exceeded (see Retry-After)"},
    503: {"description": "the broker did not take the record; try again"},
}


class AlertSummary(BaseModel):
    alert_id: str
    notification: str = Field(description="new, renotify or recurrence")
    classification: str = Field(description="classification.type of the indicator")
    what: str = Field(description="the URL, name, address, network or AS the alert is about")
    reasons: list[str] = Field(description="why the alert was routed to you")
    first_seen: str
    last_seen: str
    count: int
    tlp: str | None = None
    feed: str | None = None
    status: str | None = Field(None, description="your last answer the pipeline accepted")
    pending: str | None = Field(None, description="an answer posted here, not yet judged")


class AlertList(BaseModel):
    recipient: str
    alerts: list[AlertSummary]


class AlertDetail(AlertSummary):
    alert: dict[str, Any] = Field(description="the alert record (deploy/schemas/alert.schema.json)")


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Status
    note: str | None = Field(None, max_length=4096, description="free text; blank: none")


class FeedbackOut(BaseModel):
    alert_id: str
    recipient: str
    status: Status
    time: str
    topic: str
    note: str | None = None


class ContributionOut(BaseModel):
    accepted: int
    topic: str


router = APIRouter(prefix="/api/v1", responses=ERRORS)
AlertId = Annotated[str, Path(pattern=ALERT_ID, description="the alert's id")]


def _write_failed(exc: WriteError) -> Refused:
    return Refused(503, "Service unavailable", "the broker did not acknowledge; try again")


@router.get("/alerts", response_model=AlertList, summary="Your alerts")
def list_alerts(recipient: Me, svc: Svc,
                state: Annotated[Literal["open", "all"], Query(
                    description="open: not yet answered as dealt with")] = "open",
                limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> AlertList:
    book = svc.store.book(recipient)
    with book.lock:
        latest = sorted(book.latest.values(), key=lambda s: (s.timestamp_ms, s.offset),
                        reverse=True)
    summaries = [svc.summary(sent) for sent in latest]
    if state == "open":
        summaries = [s for s in summaries if s["status"] in OPEN]
    summaries = summaries[:min(limit, svc.config.gateway.max_page)]
    svc.metrics.delivery_sent.labels("api", recipient).inc(len(summaries))
    return AlertList(recipient=recipient, alerts=[AlertSummary(**s) for s in summaries])


@router.get("/alerts/{alert_id}", response_model=AlertDetail, summary="One of your alerts")
def get_alert(alert_id: AlertId, recipient: Me, svc: Svc) -> AlertDetail:
    sent = svc.store.book(recipient).latest.get(alert_id)
    if sent is None:
        raise Refused(404, "Not found", "no such alert among yours")
    svc.metrics.delivery_sent.labels("api", recipient).inc()
    return AlertDetail(**svc.summary(sent), alert=sent.received.alert)


@router.post("/alerts/{alert_id}/feedback", status_code=202, response_model=FeedbackOut,
             summary="Answer one of your alerts",
             description="Writes the status to your feedback topic; the feedback stage checks "
                         "it against what you were sent and the status so far (a report it "
                         "refuses goes to its dead letters, never counted).")
def post_feedback(alert_id: AlertId, answer: FeedbackIn, recipient: Me,
                  svc: Svc) -> FeedbackOut:
    if alert_id not in svc.store.book(recipient).latest:
        raise Refused(404, "Not found", "no such alert among yours")
    note = answer.note.strip() if answer.note else None
    try:
        return FeedbackOut(**svc.answer(recipient, alert_id, answer.status, note or None, "api"))
    except WriteError as exc:
        raise _write_failed(exc) from None


Contribution = dict[str, Any] | Annotated[list[dict[str, Any]],
                                          Field(min_length=1, max_length=MAX_RECORDS)]


@router.post("/contributions", status_code=202, response_model=ContributionOut,
             summary="Share indicators back",
             description="A STIX 2.1 bundle (one message), one indicator record or a list of "
                         "them in the ingest shape (one message each) onto your "
                         "contributions topic; the contributions stage validates them and "
                         "stamps you as their provider.")
def contribute(body: Annotated[Contribution, Body()], recipient: Me,
               svc: Svc) -> ContributionOut:
    records = body if isinstance(body, list) else [body]
    values: list[tuple[str | None, bytes]] = [(None, encode(record)) for record in records]
    if any(len(value) > MAX_RECORD_BYTES for _, value in values):
        raise Refused(413, "Too large", f"a record is larger than {MAX_RECORD_BYTES} bytes")
    topic = topics.contributions_topic(recipient)
    try:
        svc.writer.ensure(topic)
        svc.writer.send(topic, values)
    except WriteError as exc:
        raise _write_failed(exc) from None
    svc.metrics.gateway_contributions.labels(recipient).inc(len(values))
    return ContributionOut(accepted=len(values), topic=topic)
