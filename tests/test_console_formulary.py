"""The console's formulary page: the active rulebook, searchable, for everyone who signs in."""

import re
import shutil
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path

import pytest

from service.rulebook.model import OUTCOMES

from .conftest import sign_in


class Page(HTMLParser):
    """What the tests read from a page: the rules shown (each article's h3 id), headings, labels."""

    def __init__(self, html: str):
        super().__init__()
        self.rules, self.headings, self.labels, self.fields = [], [], set(), []
        self._in_article = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "article":
            self._in_article = True
        elif tag == "h3" and self._in_article:
            self.rules.append(attrs.get("id"))
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "label" and attrs.get("for"):
            self.labels.add(attrs["for"])
        if tag in ("input", "select", "textarea") and attrs.get("type") != "hidden":
            self.fields.append(attrs.get("id"))

    def handle_endtag(self, tag):
        if tag == "article":
            self._in_article = False


@pytest.fixture
def signed_in(app, tokens):
    client = app.test_client()
    sign_in(client, tokens["clinician"])
    return client


def formulary(client, **query):
    response = client.get("/console/formulary", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def rules_shown(client, **query) -> list[str]:
    return Page(formulary(client, **query)).rules


def test_every_rule_is_listed_without_a_search(app, signed_in):
    rulebook = app.extensions["active_rulebook"].current.rulebook
    html = formulary(signed_in)
    assert Page(html).rules == [rule.id for rule in rulebook.rules]
    assert f"{len(rulebook.rules)} of {len(rulebook.rules)} rules" in html


def test_the_version_digest_and_sources_are_shown(app, signed_in):
    rulebook = app.extensions["active_rulebook"].current.rulebook
    html = formulary(signed_in)
    assert rulebook.version in html and rulebook.digest in html and rulebook.effective in html
    for source in rulebook.cited_sources:
        assert f'id="source-{source}"' in html


@pytest.mark.parametrize("query", ["G61.0", "g61.0", "guillain", "Guillain-Barré", "guillain barre", "GBS"])
def test_searching_a_code_or_a_name_shows_the_gbs_rules_only(signed_in, query):
    assert sorted(rules_shown(signed_in, q=query)) == ["gbs-adults", "gbs-children"]


def test_searching_a_rule_id_shows_that_rule_first(signed_in):
    assert rules_shown(signed_in, q="gbs-adults") == ["gbs-adults"]
    assert rules_shown(signed_in, q="ITP-LABELLED")[0] == "itp-labelled"


def test_the_decision_cards_link_finds_its_rule(app, signed_in):
    with app.test_request_context():
        from flask import url_for

        link = url_for("console_formulary.formulary", q="cidp-labelled")
    assert Page(signed_in.get(link).get_data(as_text=True)).rules[0] == "cidp-labelled"


def test_the_outcome_filter_keeps_only_that_outcome(app, signed_in):
    rulebook = app.extensions["active_rulebook"].current.rulebook
    for outcome in OUTCOMES:
        assert rules_shown(signed_in, outcome=outcome) == [r.id for r in rulebook.rules if r.outcome == outcome]
    assert rules_shown(signed_in, q="G61.0", outcome="needs_review") == ["gbs-adults"]


def test_an_unknown_outcome_filter_is_ignored(app, signed_in):
    rulebook = app.extensions["active_rulebook"].current.rulebook
    assert rules_shown(signed_in, outcome="maybe") == [rule.id for rule in rulebook.rules]


def test_a_search_that_matches_nothing_says_so(signed_in):
    html = formulary(signed_in, q="no-such-disease-xyz")
    assert Page(html).rules == []
    assert "No rules match “no-such-disease-xyz”" in html


def test_the_search_is_shown_back_escaped(signed_in):
    html = formulary(signed_in, q='<script>"x"</script>')
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_rule_shows_its_diagnosis_conditions_dose_and_evidence(signed_in):
    html = formulary(signed_in, q="gbs-children")
    for shown in (
        "Guillain-Barré syndrome",
        "G61.0",
        "age &lt; 18",
        "0.4 to 2 g/kg",
        "a one-off course",
        "180 days",
        "outcome-off_label_with_evidence",
        "Off-Label Use of Intravenous Immunoglobulin",
        "paediatric Guillain-Barré syndrome",
    ):
        assert shown in html, shown


def test_headings_are_in_order_and_every_field_has_a_label(signed_in):
    page = Page(formulary(signed_in, q="gbs"))
    assert page.headings[0] == 1 and page.headings.count(1) == 1
    assert all(b <= a + 1 for a, b in pairwise(page.headings))
    assert page.headings.count(3) == len(page.rules) > 0
    assert page.fields and all(field in page.labels for field in page.fields)


def test_every_role_may_read_the_formulary(app, tokens):
    for role in tokens:
        client = app.test_client()
        sign_in(client, tokens[role])
        assert client.get("/console/formulary").status_code == 200, role


def test_without_signing_in_the_page_sends_you_to_sign_in(app):
    response = app.test_client().get("/console/formulary?q=G61.0")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in")
    assert "next=" in response.headers["Location"]


# --- The rulebook versions page. ---


def test_every_role_has_the_rulebook_versions_page_in_its_menu(client, tokens):
    for token in tokens.values():
        sign_in(client, token)
        page = client.get("/console/rulebook/versions")
        assert page.status_code == 200 and 'href="/console/rulebook/versions"' in page.get_data(as_text=True)


@pytest.mark.usefixtures("single_person_install")  # a start on an edited file activates it
def test_the_versions_page_lists_the_versions_and_shows_the_changes_between_two(
    make_app, tokens, app, tmp_path, signed_in
):
    served = app.extensions["active_rulebook"].current.rulebook
    shutil.copytree(Path(served.path).parent, tmp_path / "book")
    edited = tmp_path / "book" / Path(served.path).name
    edited.write_text(
        edited.read_text()
        .replace(f"version: {served.version}\n", "version: 1.1.0\n", 1)
        .replace("  - id: gbs-adults\n", "  - id: gbs-adults\n    priority: 2\n", 1)
    )
    make_app(RULEBOOK=str(edited))  # another process starts on the edited rulebook: version 1.1.0 stored
    html = signed_in.get("/console/rulebook/versions").get_data(as_text=True)
    assert html.index("<strong>1.1.0</strong>") < html.index(f"<strong>{served.version}</strong>")  # newest first
    assert served.digest[:12] in html and "by service start" in html
    assert "Changes from 1.0.0" in html and "rule gbs-adults: priority 0 -&gt; 2" in html  # the latest change
    new = re.search(r'<option value="(1\.1\.0@[0-9a-f]{64})"', html).group(1)
    old = f"{served.version}@{served.digest}"
    back = signed_in.get("/console/rulebook/versions", query_string={"old": new, "new": old}).get_data(as_text=True)
    assert "rule gbs-adults: priority 2 -&gt; 0" in back
    same = signed_in.get("/console/rulebook/versions", query_string={"old": old, "new": old}).get_data(as_text=True)
    assert "No differences." in same
    missing = signed_in.get("/console/rulebook/versions", query_string={"old": "9.9", "new": old})
    assert missing.status_code == 200 and "no stored rulebook version 9.9" in missing.get_data(as_text=True)


def test_the_versions_page_has_ordered_headings_and_labelled_fields(signed_in):
    page = Page(signed_in.get("/console/rulebook/versions").get_data(as_text=True))
    assert page.headings[0] == 1 and page.headings.count(1) == 1
    assert all(b <= a + 1 for a, b in pairwise(page.headings))
    assert page.fields == ["compare-old", "compare-new"] and all(field in page.labels for field in page.fields)
