"""Review cases under concurrency and volume: transitions serialised, the queue paged, resubmissions joined."""

import datetime
import html
import itertools
import re
import threading

import pytest

from service import clock

from .conftest import bearer, sign_in

TRIES = 40


def _polymyositis(ref: str) -> dict:
    """A request that needs review for want of concurrent therapies; prednisone makes it off-label with evidence."""
    return {
        "diagnosis": {"code": "M33.20"},
        "patient": {"age_years": 50, "sex": "male", "ref": ref, "weight_kg": 90, "height_cm": 180},
    }


def _race(app, *requests):
    """Send the requests from one thread each, released together; returns the responses in order."""
    barrier = threading.Barrier(len(requests))
    responses: list = [None] * len(requests)

    def send(index, method, path, token, body):
        client = app.test_client()
        barrier.wait()
        responses[index] = client.open(path, method=method, json=body, headers=bearer(token))

    threads = [threading.Thread(target=send, args=(i, *request)) for i, request in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def test_a_denial_racing_added_facts_has_one_winner_and_leaves_the_case_consistent(app, client, tokens):
    winners = {"denied": 0, "closed_by_rules": 0}
    for attempt in range(TRIES):
        ref = f"MRN-RACE-{attempt}"
        case_id = client.post("/v1/decisions", json=_polymyositis(ref), headers=bearer(tokens["clinician"])).get_json()[
            "review_case_id"
        ]
        denial, facts = _race(
            app,
            (
                "POST",
                f"/v1/reviews/{case_id}/resolution",
                tokens["pharmacist"],
                {"resolution": "denied", "reason": "No"},
            ),
            (
                "POST",
                f"/v1/reviews/{case_id}/facts",
                tokens["clinician"],
                {"therapies": {"concurrent": ["prednisone"]}},
            ),
        )
        assert sorted([denial.status_code, facts.status_code]) == [201, 409], (attempt, denial.json, facts.json)
        loser = denial if denial.status_code == 409 else facts
        assert loser.get_json()["error"]["code"] in ("conflict", "case_changed")
        case = client.get(f"/v1/reviews/{case_id}", headers=bearer(tokens["pharmacist"])).get_json()
        granted = client.get(f"/v1/authorisations?patient_ref={ref}", headers=bearer(tokens["pharmacist"])).get_json()[
            "authorisations"
        ]
        resolutions = [r["resolution"] for r in case["resolutions"]]
        if case["status"] == "denied":
            assert (granted, resolutions) == ([], ["denied"]), attempt
            assert case["decision"]["outcome"] == "needs_review"  # the losing re-decision was not applied
        else:
            assert case["status"] == "closed_by_rules", attempt
            assert (len(granted), resolutions) == (1, []), attempt
            assert case["decision"]["decision_id"] == facts.get_json()["decision_id"]
        winners[case["status"]] += 1
    # Nothing half-done of the losers: one decision record for each winning re-decision, none for a losing one.
    decisions = client.get("/v1/audit?limit=500&outcome=off_label_with_evidence", headers=bearer(tokens["auditor"]))
    assert len(decisions.get_json()["records"]) == winners["closed_by_rules"]


@pytest.mark.parametrize("first", ["denied", "more_information"])
def test_a_resolution_of_a_case_that_changed_since_it_was_read_is_refused(app, client, tokens, first, monkeypatch):
    """The reviewer's view is stale when new facts arrive between reading the case and resolving it."""
    from service.workflow import cases

    case_id = client.post(
        "/v1/decisions", json=_polymyositis("MRN-STALE"), headers=bearer(tokens["clinician"])
    ).get_json()["review_case_id"]
    read = cases._case_row

    def read_then_facts_arrive(connection, wanted):
        row = read(connection, wanted)
        monkeypatch.setattr(cases, "_case_row", read)
        still_unclear = {"patient": {"age_years": 51}}
        added = client.post(f"/v1/reviews/{case_id}/facts", json=still_unclear, headers=bearer(tokens["clinician"]))
        assert added.status_code == 201 and added.get_json()["outcome"] == "needs_review"
        return row

    monkeypatch.setattr(cases, "_case_row", read_then_facts_arrive)
    stale = client.post(
        f"/v1/reviews/{case_id}/resolution",
        json={"resolution": first, "reason": "Looked at the first request"},
        headers=bearer(tokens["pharmacist"]),
    )
    assert stale.status_code == 409 and stale.get_json()["error"]["code"] == "case_changed"
    case = client.get(f"/v1/reviews/{case_id}", headers=bearer(tokens["pharmacist"])).get_json()
    assert case["status"] == "open" and case["resolutions"] == []


def test_a_resubmission_for_the_same_patient_and_diagnosis_joins_the_open_case(client, tokens):
    clinician = bearer(tokens["clinician"])
    first = client.post("/v1/decisions", json=_polymyositis("MRN-AGAIN"), headers=clinician).get_json()
    again = client.post("/v1/decisions", json=_polymyositis(" MRN-AGAIN "), headers=clinician).get_json()
    assert (first["joined_case"], again["joined_case"]) == (False, True)
    assert again["review_case_id"] == first["review_case_id"]
    queue = client.get("/v1/reviews", headers=bearer(tokens["pharmacist"])).get_json()
    assert [c["id"] for c in queue["cases"]] == [first["review_case_id"]]
    case = client.get(f"/v1/reviews/{first['review_case_id']}", headers=bearer(tokens["pharmacist"])).get_json()
    assert (case["opening_decision_id"], case["decision"]["decision_id"]) == (
        first["decision_id"],
        again["decision_id"],
    )
    # Another patient, another diagnosis, another requester, or a closed case: a case of its own.
    other_patient = client.post("/v1/decisions", json=_polymyositis("MRN-OTHER"), headers=clinician).get_json()
    other_diagnosis = client.post(
        "/v1/decisions", json={**_polymyositis("MRN-AGAIN"), "diagnosis": {"code": "G61.0"}}, headers=clinician
    ).get_json()
    other_requester = client.post(
        "/v1/decisions", json=_polymyositis("MRN-AGAIN"), headers=bearer(tokens["admin"])
    ).get_json()
    opened = {other_patient["review_case_id"], other_diagnosis["review_case_id"], other_requester["review_case_id"]}
    assert len(opened) == 3 and first["review_case_id"] not in opened
    client.post(
        f"/v1/reviews/{first['review_case_id']}/resolution",
        json={"resolution": "denied", "reason": "No"},
        headers=bearer(tokens["pharmacist"]),
    )
    after_closing = client.post("/v1/decisions", json=_polymyositis("MRN-AGAIN"), headers=clinician).get_json()
    assert after_closing["joined_case"] is False and after_closing["review_case_id"] != first["review_case_id"]


def test_simultaneous_identical_requests_open_one_case(app, tokens):
    requests = [("POST", "/v1/decisions", tokens["clinician"], _polymyositis("MRN-TWINS"))] * 4
    answers = [response.get_json() for response in _race(app, *requests)]
    assert len({answer["review_case_id"] for answer in answers}) == 1
    assert sorted(answer["joined_case"] for answer in answers) == [False, True, True, True]


def _open_cases(client, tokens, count: int, prefix: str, body=None) -> list[str]:
    made = []
    for number in range(count):
        request = {
            **(body or _polymyositis("")),
            "patient": {**_polymyositis("")["patient"], "ref": f"{prefix}-{number}"},
        }
        made.append(
            client.post("/v1/decisions", json=request, headers=bearer(tokens["clinician"])).get_json()["review_case_id"]
        )
    return made


def _walk(client, tokens, query: str) -> tuple[list[dict], list[int]]:
    """Every page of the queue for the query: the cases in order, and each page's total."""
    seen, totals, cursor = [], [], None
    while True:
        page = client.get(
            f"/v1/reviews?{query}" + (f"&cursor={cursor}" if cursor else ""), headers=bearer(tokens["pharmacist"])
        )
        assert page.status_code == 200, page.get_json()
        body = page.get_json()
        seen += body["cases"]
        totals.append(body["total"])
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, totals


def test_the_queue_pages_past_200_cases_with_a_cursor_and_gives_the_total(client, tokens):
    opened = _open_cases(client, tokens, 205, "MRN-Q")
    first = client.get("/v1/reviews?limit=200", headers=bearer(tokens["pharmacist"])).get_json()
    assert (len(first["cases"]), first["total"]) == (200, 205) and first["next_cursor"]
    oldest, totals = _walk(client, tokens, "limit=200")
    assert [c["id"] for c in oldest] == opened and totals == [205, 205]  # each case once, oldest first
    newest, totals = _walk(client, tokens, "sort=newest&limit=60")
    assert [c["id"] for c in newest] == opened[::-1] and totals == [205] * 4
    assert {c["reason"] for c in oldest} == {"missing_facts"}


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("cursor=bm90IGEgY3Vyc29y", "cursor"),
        ("sort=alphabetical", "sort"),
        ("reason=boredom", "reason"),
        ("diagnosis=XYZ", "diagnosis"),
        ("older_than_hours=-1", "older_than_hours"),
        ("colour=red", "colour"),
    ],
)
def test_a_bad_queue_argument_is_a_400_naming_it(client, tokens, query, field):
    response = client.get(f"/v1/reviews?{query}", headers=bearer(tokens["pharmacist"]))
    assert response.status_code == 400 and response.get_json()["error"]["field"] == field


def test_a_cursor_is_refused_with_another_sort(client, tokens):
    _open_cases(client, tokens, 3, "MRN-S")
    cursor = client.get("/v1/reviews?limit=1", headers=bearer(tokens["pharmacist"])).get_json()["next_cursor"]
    refused = client.get(f"/v1/reviews?limit=1&sort=newest&cursor={cursor}", headers=bearer(tokens["pharmacist"]))
    assert refused.status_code == 400 and refused.get_json()["error"]["field"] == "cursor"


def test_the_queue_filters_by_reason_diagnosis_and_age_and_sorts_by_diagnosis(client, tokens, monkeypatch):
    start, ticks, later = clock.now(), itertools.count(), datetime.timedelta(0)
    monkeypatch.setattr(clock, "now", lambda: start + later + datetime.timedelta(milliseconds=next(ticks)))
    waiting = _open_cases(client, tokens, 3, "MRN-M") + _open_cases(
        client, tokens, 2, "MRN-T", {"diagnosis": {"text": "chronic fatigue"}}
    )
    later = datetime.timedelta(hours=30)
    recent = _open_cases(client, tokens, 2, "MRN-G", {"diagnosis": {"code": "G61.0"}})

    def ids(query):
        found, totals = _walk(client, tokens, query)
        assert totals[0] == len(found)
        return [c["id"] for c in found]

    assert ids("reason=missing_facts") == waiting[:3]
    assert ids("reason=unclear_diagnosis") == waiting[3:]
    assert ids("reason=rule_review") == recent  # GBS in adults: the rule itself asks for review
    assert ids("diagnosis=M33") == waiting[:3] and ids("diagnosis=G61.0") == recent
    assert ids("older_than_hours=24") == waiting and ids("newer_than_hours=24") == recent
    assert ids("older_than_hours=24&reason=missing_facts&limit=1") == waiting[:3]
    by_code, _ = _walk(client, tokens, "sort=diagnosis&limit=2")
    assert [c["code"] for c in by_code] == [None, None, "G61.0", "G61.0", "M33.20", "M33.20", "M33.20"]
    assert [c["id"] for c in by_code] == waiting[3:] + recent + waiting[:3]


def test_the_console_queue_shows_the_total_and_pages_with_a_next_link(client, tokens):
    opened = _open_cases(client, tokens, 55, "MRN-C")
    sign_in(client, tokens["pharmacist"])
    first = client.get("/console/reviews").get_data(as_text=True)
    assert '<span class="total">55</span> cases, showing 50' in first
    second = client.get(html.unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))).get_data(as_text=True)
    shown = [re.findall(r'href="/console/reviews/([0-9a-f-]{36})"', page) for page in (first, second)]
    assert shown[0] + shown[1] == opened and 'rel="next"' not in second and "First page" in second
    filtered = client.get("/console/reviews?diagnosis=G61&sort=newest").get_data(as_text=True)
    assert '<span class="total">0</span>' in filtered and "No case matches." in filtered
    refused = client.get("/console/reviews?older_than_hours=soon")
    assert refused.status_code == 400 and "older_than_hours must be a whole number" in refused.get_data(as_text=True)


@pytest.mark.parametrize("reason", ["\u200b\u200b", "\u2060\ufeff", " \u00a0\u3000", "\u200e\t\u202c"])
def test_a_reason_of_only_invisible_characters_is_refused_naming_the_field(client, tokens, reason):
    case_id = _open_cases(client, tokens, 1, "MRN-INVISIBLE")[0]
    refused = client.post(
        f"/v1/reviews/{case_id}/resolution",
        json={"resolution": "denied", "reason": reason},
        headers=bearer(tokens["pharmacist"]),
    )
    assert refused.status_code == 400 and refused.get_json()["error"]["field"] == "reason"


def test_a_patient_reference_is_normalised_the_same_way_on_every_path(client, tokens):
    """Given with spaces, a zero-width space or a decomposed accent, it is the same patient everywhere."""
    cidp = {"diagnosis": {"code": "G61.81"}, "patient": {"age_years": 50, "sex": "female", "ref": " MRN-É7\u200b "}}
    granted = client.post("/v1/decisions", json=cidp, headers=bearer(tokens["clinician"])).get_json()
    assert granted["authorisation_id"]
    for spelling in ("MRN-É7", "\tMRN-E\u03017 ", "\ufeffMRN-É7"):
        found = client.get(
            "/v1/authorisations", query_string={"patient_ref": spelling}, headers=bearer(tokens["pharmacist"])
        ).get_json()["authorisations"]
        assert [a["id"] for a in found] == [granted["authorisation_id"]], spelling
    for spelling in ("MRN-É7", " MRN-E\u03017  "):  # the audit filter refuses what is not printable
        audited = client.get(
            "/v1/audit", query_string={"patient_ref": spelling}, headers=bearer(tokens["auditor"])
        ).get_json()["records"]
        assert granted["decision_id"] in {r["decision_id"] for r in audited}, spelling
    sign_in(client, tokens["pharmacist"])
    page = client.get("/console/authorisations", query_string={"patient_ref": "MRN-E\u03017\u200b"})
    assert "1 authorisation for" in page.get_data(as_text=True) and "<td>G61.81</td>" in page.get_data(as_text=True)
