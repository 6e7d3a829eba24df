"""TAXII 2.1 selection: filters, versions, pages and their headers; no broker, no server."""

from __future__ import annotations

import pytest

from threatroute.streams.gateway import taxii


def obj(oid: str, modified: str, kind: str = "indicator") -> dict:
    return {"type": kind, "id": f"{kind}--{oid}", "spec_version": "2.1",
            "created": "2026-01-01T00:00:00.000Z", "modified": modified}


def collection() -> list[taxii.TaxiiObject]:
    items = []
    for n in range(10):  # ten alerts one second apart: an indicator and a sighting each
        stamp = 1_767_225_600_000 + n * 1000
        items += taxii.objects_of([obj(f"i{n}", f"2026-01-01T00:00:0{n}.000Z"),
                                   obj(f"s{n}", f"2026-01-01T00:00:0{n}.000Z", "sighting")],
                                  stamp * 1000, n % 3, n)
    # the indicator of alert 0 sent again later (a re-notification): a newer version
    items += taxii.objects_of([obj("i0", "2026-01-01T00:01:00.000Z")], 1_767_225_700_000_000,
                              0, 99)
    return items


def pages(query: dict[str, str]) -> list[taxii.Page]:
    out, params = [], dict(query)
    while True:
        page = taxii.select(collection(), taxii.parse_query(params, max_page=1000))
        out.append(page)
        if not page.more:
            return out
        params["next"] = page.next or ""


def test_pages_cover_the_collection_once_in_date_added_order():
    got = pages({"limit": "3"})
    objects = [o for p in got for o in p.items]
    assert [len(p.items) for p in got] == [3, 3, 3, 3, 3, 3, 2]
    assert len({(o.obj["id"], o.version) for o in objects}) == 20
    assert [o.added for o in objects] == sorted(o.added for o in objects)
    assert len({o.added for o in objects}) == 20  # each object its own date_added
    first = got[0].headers()
    assert first["X-TAXII-Date-Added-First"] == taxii.timestamp(objects[0].added)
    assert first["X-TAXII-Date-Added-Last"] == taxii.timestamp(objects[2].added)


def test_default_version_is_the_last_and_all_shows_both():
    last = taxii.select(collection(), taxii.parse_query({"match[id]": "indicator--i0"}, 1000))
    assert [o.version for o in last.items] == ["2026-01-01T00:01:00.000Z"]
    every = taxii.select(collection(), taxii.parse_query(
        {"match[id]": "indicator--i0", "match[version]": "all"}, 1000))
    assert len(every.items) == 2


def test_added_after_is_exclusive_and_resumes_where_a_page_ended():
    objects = pages({})[0].items
    cut = objects[5].added
    after = taxii.select(collection(), taxii.parse_query(
        {"added_after": taxii.timestamp(cut)}, 1000))
    assert [o.obj["id"] for o in after.items] == [o.obj["id"] for o in objects[6:]]


def test_type_filter():
    page = taxii.select(collection(), taxii.parse_query({"match[type]": "sighting"}, 1000))
    assert len(page.items) == 10 and {o.obj["type"] for o in page.items} == {"sighting"}


@pytest.mark.parametrize("params", [{"limit": "x"}, {"limit": "-1"}, {"next": "garbage"},
                                    {"added_after": "yesterday"},
                                    {"match[version]": "soon"}])
def test_bad_parameters_are_refused(params):
    with pytest.raises(taxii.QueryError):
        taxii.parse_query(params, 1000)


def test_limit_is_capped_and_collections_are_per_recipient():
    assert taxii.parse_query({"limit": "99999"}, 1000).limit == 1000
    assert taxii.collection_id("a") != taxii.collection_id("b")
    assert taxii.collection_id("a") == taxii.collection_id("a")


def test_an_object_sent_with_every_alert_was_added_once_when_first_sent():
    marking = {"type": "marking-definition", "id": "marking-definition--tlp-green",
               "spec_version": "2.1", "created": "2022-10-01T00:00:00.000Z"}
    items = (taxii.objects_of([obj("a", "2026-01-01T00:00:00.000Z"), marking], 1000, 0, 0)
             + taxii.objects_of([obj("b", "2026-01-01T00:00:01.000Z"), marking], 2000, 0, 1))
    every = taxii.select(items, taxii.parse_query({}, 1000)).items
    assert [o.obj["id"] for o in every].count(marking["id"]) == 1
    later = taxii.select(items, taxii.parse_query({"added_after": taxii.timestamp(1001)}, 1000))
    assert [o.obj["id"] for o in later.items] == ["indicator--b"]
