"""The gateway against the real broker and the real pipeline, with clients no one here wrote:
OASIS's taxii2-client pages through a recipient's collection and is refused another's, the
objects go through OASIS's stix2-validator, schemathesis fuzzes the served OpenAPI document;
and recipient A's token can neither read, answer nor contribute for recipient B."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import requests
from stix2validator import ValidationOptions, validate_instance
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from tests.integration.gateway_helpers import (
    Gateway,
    World,
    issue_tokens,
    metric,
    route,
    start_gateway,
    stop,
)
from tests.integration.kafka_helpers import end_offsets, read_since
from threatroute import topics
from threatroute.streams.gateway.taxii import TAXII_MEDIA, collection_id

COUNTS = {"ga": 23, "gb": 3, "gc": 3}


@pytest.fixture(scope="module")
def world(kafka_env, bootstrap, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    world, pipeline, log = route(kafka_env, bootstrap, tmp, COUNTS)
    issue_tokens(world, tmp)
    gateway = start_gateway(world.env, tmp, rate_limit="100000/minute",
                            auth_failure_limit="100000/minute")
    try:
        yield world, gateway, tmp
    finally:
        stop(gateway.process, gateway.log)
        stop(pipeline, log)


def collection_url(gateway: Gateway, recipient: str) -> str:
    return f"{gateway.url}/taxii2/alerts/collections/{collection_id(recipient)}/"


def all_objects(gateway: Gateway, world: World, rid: str) -> list[dict]:
    collection = Collection(collection_url(gateway, rid), user=rid, password=world.tokens[rid])
    return [o for page in as_pages(collection.get_objects, per_request=1000)
            for o in page.get("objects", [])]


def alert_ids(objects: list[dict]) -> set[str]:
    ids = set()
    for sighting in (o for o in objects if o["type"] == "sighting"):
        props = {k[len("x_threatroute_"):]: v for k, v in sighting.items()
                 if k.startswith("x_threatroute_")}
        for extension in (sighting.get("extensions") or {}).values():
            props.update(extension)
        ids.add(props["alert_id"])
    return ids


def test_taxii2_client_pages_through_its_own_collection_and_sees_nothing_else(world):
    world, gateway, _ = world
    a, b = world.rid("ga"), world.rid("gb")
    server = Server(f"{gateway.url}/taxii2/", user=a, password=world.tokens[a])
    (root,) = server.api_roots
    (collection,) = root.collections  # exactly one collection: its own
    assert collection.id == collection_id(a) and collection.can_read and not collection.can_write

    pages = list(as_pages(collection.get_objects, per_request=7))
    objects = [o for page in pages for o in page.get("objects", [])]
    assert len(pages) > 3 and all(len(p["objects"]) == 7 for p in pages[:-1])
    assert not pages[-1].get("more") and all(p.get("more") for p in pages[:-1])
    assert len(objects) == len({(o["id"], o.get("modified")) for o in objects})
    # exactly A's alerts, every one of them
    assert alert_ids(objects) == {x["alert_id"] for x in world.alerts[a]}
    assert {o["type"] for o in objects} >= {"indicator", "sighting"}

    manifest = [m for page in as_pages(collection.get_manifest, per_request=5)
                for m in page.get("objects", [])]
    assert [m["id"] for m in manifest] == [o["id"] for o in objects]

    # added_after resumes after the last object of a page (the X-TAXII-Date-Added-Last header)
    response = httpx.get(f"{collection.url}objects/", params={"limit": 10}, timeout=30,
                         auth=(a, world.tokens[a]), headers={"Accept": TAXII_MEDIA})
    assert response.headers["content-type"] == TAXII_MEDIA
    last = response.headers["X-TAXII-Date-Added-Last"]
    rest = collection.get_objects(added_after=last)["objects"]
    assert [o["id"] for o in response.json()["objects"] + rest] == [o["id"] for o in objects]

    # another recipient's collection: refused, with valid credentials of A
    foreign = Collection(collection_url(gateway, b), user=a, password=world.tokens[a])
    with pytest.raises(requests.HTTPError) as refused:
        foreign.get_objects()
    assert refused.value.response.status_code == 404
    with pytest.raises(requests.HTTPError) as refused:
        ApiRoot(f"{gateway.url}/taxii2/alerts/", user=a, password=world.tokens[b]).refresh()
    assert refused.value.response.status_code == 401


def test_every_format_becomes_stix_that_the_oasis_validator_accepts(world):
    world, gateway, _ = world
    for name in ("ga", "gb", "gc"):  # json, csv and stix recipients
        rid = world.rid(name)
        objects = all_objects(gateway, world, rid)
        assert alert_ids(objects) == {x["alert_id"] for x in world.alerts[rid]}
        bundle = {"type": "bundle", "id": "bundle--6a1c1c3e-2b5f-4f0c-9d3e-8f6f0c1b2a3d",
                  "objects": objects}
        result = validate_instance(bundle, ValidationOptions(version="2.1"))
        errors = [e.message for e in result.errors]
        assert result.is_valid and not errors, errors[:5]


@pytest.mark.parametrize("auth", [None, "Bearer nope", "Basic bm9wZTpub3Bl", "Basic !!!",
                                  "Digest x"])
def test_missing_or_wrong_credentials_are_refused_everywhere(world, auth):
    world, gateway, _ = world
    headers = {"Authorization": auth} if auth else {}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        for path in ("/taxii2/", "/api/v1/alerts", "/desk",
                     f"/taxii2/alerts/collections/{collection_id(world.rid('ga'))}/objects/"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"].startswith("Basic")
        assert client.post("/api/v1/contributions", json={"a": 1}).status_code == 401


def test_a_cannot_read_answer_or_contribute_for_b(world, bootstrap):
    world, gateway, _ = world
    a, b = world.rid("ga"), world.rid("gb")
    b_alert = world.alerts[b][0]["alert_id"]
    since = end_offsets(bootstrap, topics.FEEDBACK)  # plaintext: the shared feedback topic
    with gateway.client(world.tokens[a]) as client:
        listed = client.get("/api/v1/alerts", params={"state": "all"}).json()
        assert listed["recipient"] == a
        assert {x["alert_id"] for x in listed["alerts"]} == {x["alert_id"] for x in world.alerts[a]}
        assert client.get(f"/api/v1/alerts/{b_alert}").status_code == 404
        assert client.post(f"/api/v1/alerts/{b_alert}/feedback",
                           json={"status": "remediated"}).status_code == 404
        assert client.get(f"/desk/alerts/{b_alert}").status_code == 404
        page = client.get("/desk", params={"state": "all"}).text
        assert b_alert not in page and world.alerts[a][0]["alert_id"] in page
        # a contribution goes to A's own topic whatever it says
        response = client.post("/api/v1/contributions", json={
            "classification": {"type": "phishing"}, "source": {"url": "http://x.example/"},
            "extra": {"owner": {"id": b}}, "recipient": b})
        assert response.status_code == 202 and response.json()["topic"] == f"contributions.{a}"
    assert topics.contributions_topic(b) not in _topic_names(bootstrap) or not read_since(
        bootstrap, topics.contributions_topic(b), None, idle=1.0)
    # nothing was written as feedback for B's alert
    assert not [k for k, _ in read_since(bootstrap, topics.FEEDBACK, since, idle=1.0)
                if k == b_alert.encode()]


def _topic_names(bootstrap: str) -> set[str]:
    from confluent_kafka.admin import AdminClient

    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def test_feedback_and_contributions_land_on_the_recipients_own_topics(world, bootstrap):
    world, gateway, _ = world
    a = world.rid("ga")
    alert = world.alerts[a][1]["alert_id"]
    # on a plaintext broker feedback goes to the shared topic (feedback.<id>: secure brokers)
    feedback_topic, contributions_topic = topics.FEEDBACK, topics.contributions_topic(a)
    names = _topic_names(bootstrap)
    since_f = end_offsets(bootstrap, feedback_topic)
    since_c = end_offsets(bootstrap, contributions_topic) if contributions_topic in names else None
    with gateway.client(world.tokens[a]) as client:
        response = client.post(f"/api/v1/alerts/{alert}/feedback",
                               json={"status": "acknowledged", "note": "ticket 7"})
        assert response.status_code == 202, response.text
        assert client.post(f"/api/v1/alerts/{alert}/feedback",
                           json={"status": "fixed"}).status_code == 422
        assert client.post(f"/api/v1/alerts/{alert}/feedback", json={
            "status": "remediated", "recipient": "someone-else"}).status_code == 422
        bundle = {"type": "bundle", "id": "bundle--0b3b5c2e-9f1e-4c8a-8e53-5b5b1d7f3a11",
                  "objects": []}
        assert client.post("/api/v1/contributions", json=bundle,
                           headers={"Content-Type": "application/stix+json;version=2.1"}
                           ).json()["accepted"] == 1
        records = [{"classification": {"type": "scanner"}, "source": {"ip": f"192.0.2.{i}"}}
                   for i in range(3)]
        assert client.post("/api/v1/contributions", json=records).json()["accepted"] == 3
        assert client.post("/api/v1/contributions", json=[1, 2]).status_code == 422
        assert client.post("/api/v1/contributions", content=b"\xff",
                           headers={"Content-Type": "application/json"}).status_code == 400
        (open_alert,) = [x for x in client.get("/api/v1/alerts").json()["alerts"]
                         if x["alert_id"] == alert]
        assert open_alert["pending"] == "acknowledged" or open_alert["status"] == "acknowledged"
    (record,) = [v for k, v in read_since(bootstrap, feedback_topic, since_f, idle=2.0)
                 if k == alert.encode()]
    assert record["recipient"] == a
    assert (record["status"], record["note"]) == ("acknowledged", "ticket 7")
    written = [value for _, value in read_since(bootstrap, contributions_topic, since_c, expect=4)]
    assert [w for w in written if w.get("type") == "bundle"] == [bundle]
    key = json.dumps
    assert sorted(map(key, (w for w in written if "type" not in w))) == sorted(map(key, records))
    text = gateway.metrics()
    assert metric(text, "threatroute_gateway_answers_total", path="api",
                  status="acknowledged") >= 1
    assert metric(text, "threatroute_delivery_sent_total", path="taxii", recipient=a) > 0


def test_schemathesis_finds_no_server_error_in_the_openapi_document(world):
    world, gateway, tmp = world
    a = world.rid("ga")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run",
         f"{gateway.url}/api/v1/openapi.json", "-H", f"Authorization: Bearer {world.tokens[a]}",
         "--checks", "all", "--max-examples", "40", "--seed", "11", "--no-color"],
        cwd=tmp, capture_output=True, timeout=600, check=False)  # its cache stays in tmp
    output = result.stdout.decode() + result.stderr.decode()
    assert world.tokens[a] not in output or "[Filtered]" in output
    assert result.returncode == 0, output[-4000:]
    assert "No issues found" in output and "generated" in output
    assert metric(gateway.metrics(), "threatroute_gateway_requests_total", path="api",
                  code="500") == 0


def test_rate_limits_and_tls(world, tmp_path):
    world, _, _ = world
    a = world.rid("ga")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    gateway = start_gateway(world.env, tmp_path, scheme="https", tls=(cert, key),
                            verify=str(cert), rate_limit="5/minute",
                            auth_failure_limit="3/minute")
    try:
        with gateway.client(world.tokens[a], verify=str(cert)) as client:
            codes = [client.get("/taxii2/").status_code for _ in range(7)]
            assert codes == [200] * 5 + [429] * 2
            assert int(client.get("/taxii2/").headers["retry-after"]) > 0
        with httpx.Client(base_url=gateway.url, verify=str(cert), timeout=30) as anonymous:
            codes = [anonymous.get("/api/v1/alerts", auth=("x", "y")).status_code
                     for _ in range(5)]
            # the start-up probe was one refusal already
            assert codes[:2] == [401, 401] and codes[-1] == 429
        with pytest.raises(httpx.HTTPError):  # TLS only: a plaintext request gets nowhere
            httpx.get(gateway.url.replace("https", "http") + "/taxii2/", timeout=5)
        assert json.loads(httpx.get(gateway.url + "/api/v1/openapi.json", verify=str(cert),
                                    timeout=10).text)["info"]["title"] == "threatroute gateway"
    finally:
        stop(gateway.process, gateway.log)
