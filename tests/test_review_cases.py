"""Review cases under concurrency and volume: transitions serialised, the queue paged, resubmissions joined."""

import threading

import pytest

from .conftest import bearer

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
