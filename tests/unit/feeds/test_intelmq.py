import io
import json

from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Rejected, parse_report

EVENT = {"source.ip": "192.0.2.1", "classification.type": "scanner", "feed.name": "x",
         "raw": "aGk=", "__type": "Event", "extra.tag": "t"}


def _run(data: bytes):
    return list(parse_report(get_format("intelmq"), io.BytesIO(data)))


def test_json_lines_with_leading_blank_lines():
    line = json.dumps(EVENT).encode()
    outcomes = _run(b"\n \n" + line + b"\n" + line + b"\n")
    assert [(type(o), o.number) for o in outcomes] == [(Accepted, 3), (Accepted, 4)]
    assert outcomes[0].record["extra"] == {"tag": "t"}


def test_list_document_even_without_peek():
    document = b"\n  " + json.dumps([EVENT, EVENT, 5]).encode()

    class NoPeek(io.RawIOBase):  # a plain stream: no peek(), like a socket or pipe
        def __init__(self):
            self.inner = io.BytesIO(document)

        def readable(self):
            return True

        def readinto(self, buffer):
            data = self.inner.read(len(buffer))
            buffer[:len(data)] = data
            return len(data)

    outcomes = list(parse_report(get_format("intelmq"), NoPeek()))
    assert [type(o) for o in outcomes] == [Accepted, Accepted, Rejected]
    assert outcomes[2].raw == b"5"


def test_broken_list_document_is_one_rejection():
    (outcome,) = _run(b"[{\"source.ip\": ")
    assert isinstance(outcome, Rejected) and outcome.raw == b"[{\"source.ip\": "


def test_expected_events_files_ingest(feeds_dir):
    """IntelMQ's own expected events (JSON lists) are IntelMQ events: they ingest as such."""
    path = feeds_dir / "feodotracker/ipblocklist.intelmq_expected_events.json"
    outcomes = _run(path.read_bytes())
    assert len(outcomes) == 4 and all(isinstance(o, Accepted) for o in outcomes)
    assert outcomes[0].record["source"]["ip"] == "51.178.161.32"
