"""Property tests of `Formulary.decide` on the shipped rulebook, without Flask.

Requests are generated in valid and invalid shapes: diagnosis codes from the rulebook and their
ICD-10-CM descendants (spelled as prescribers type them), other valid and invalid code-like
strings, diagnosis names and synonyms with typos, random unicode, boundary and wrong-typed ages,
therapy and product names from data/ plus unknown ones, and stray fields. The properties:

(a) `decide` returns a decision or raises `RequestError`; nothing else escapes;
(b) the outcome is one of the four;
(c) the same request again (after another one) gives the same decision;
(d) an approved decision lists products whose label covers the patient; a needs_review decision
    with missing facts names only facts the request does not give;
(e) adding a fact to a request that was approved never gives a needs_review that lists that fact
    as missing.

(a) also runs, every time, on explicit examples of a labelled diagnosis at each boundary age
(0, 17.99, 18, 130, just out of range, NaN, infinity, a tiny float, a 310-digit integer, wrong types).

The default profile runs 200 examples a property; `-m long` runs one test with 5,000 examples
checking all of them at once. The example database is off (database=None), so runs leave no
.hypothesis folder; every request decided is recorded with `note()`, so a failure prints it.
"""

import copy
import math

import pytest
import simple_icd_10_cm as cm
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from service.decide.request import MAX_REF, MAX_TEXT, RequestError, parse_request
from service.rulebook import icd10
from service.rulebook.compiler import FACT_FLAGS
from service.rulebook.model import COURSES, MAX_AGE_YEARS, OUTCOMES, SEVERITIES, SEXES
from service.rulebook.reader import load_rulebook
from service.rulebook.shipped import SHIPPED_RULEBOOK

# The strategies are built from the rulebook the `shipped` fixture loads (the same file).
RULEBOOK = load_rulebook(SHIPPED_RULEBOOK)

FAST = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
LONG = settings(
    max_examples=5000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# --- Diagnosis codes ---------------------------------------------------------------------------

RULEBOOK_CODES = sorted({code for dx in RULEBOOK.diagnoses.values() for code in dx.codes})
DESCENDANTS = sorted({d for code in RULEBOOK_CODES for d in cm.get_descendants(code)} - set(RULEBOOK_CODES))
ALL_VALID_CODES = [c for c in cm.get_all_codes(with_dots=True) if icd10.is_valid(c)]
APPROVED_DIAGNOSES = {r.diagnosis for r in RULEBOOK.rules if r.outcome == "approved"}
APPROVED_CODES = sorted({c for dx in APPROVED_DIAGNOSES for c in RULEBOOK.diagnoses[dx].codes})
APPROVED_CODES += sorted({d for c in APPROVED_CODES for d in cm.get_descendants(c)} - set(APPROVED_CODES))


@st.composite
def spelled(draw, codes):
    """A valid code as a prescriber may type it: with or without the dot, any case, padded."""
    code = draw(st.sampled_from(codes))
    if draw(st.booleans()):
        code = code.replace(".", "")
    style = draw(st.sampled_from(["as is", "lower", "spaced", "padded"]))
    if style == "lower":
        code = code.lower()
    elif style == "spaced" and len(code) > 3:
        code = code[:3] + " " + code[3:]
    elif style == "padded":
        code = f"  {code}\t"
    return code


code_like = st.from_regex(r"\A[A-Za-z][0-9][0-9A-Za-z]\.?[0-9A-Za-z]{0,5}\Z")
codes = st.one_of(
    spelled(RULEBOOK_CODES),
    spelled(DESCENDANTS),
    spelled(ALL_VALID_CODES),
    code_like,
    st.text(max_size=20),
    st.sampled_from(["", "   ", "G61.0.0", "G6", "M30-M36", "1", "ZZZ", "G61.0" * 4, "Ｇ６１.０", "G61\x000"]),
)

# --- Diagnosis texts ---------------------------------------------------------------------------

NAMES = sorted(
    {dx.name for dx in RULEBOOK.diagnoses.values()}
    | {s.term for dx in RULEBOOK.diagnoses.values() for s in dx.synonyms}
    | set(RULEBOOK.abbreviations)
    | set(RULEBOOK.abbreviations.values())
)


@st.composite
def typo(draw, words):
    """A name with up to three typing slips: a letter dropped, doubled, swapped, replaced or re-cased."""
    text = draw(words)
    for _ in range(draw(st.integers(0, 3))):
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        slip = draw(st.sampled_from(["drop", "double", "swap", "replace", "case"]))
        if slip == "drop":
            text = text[:i] + text[i + 1 :]
        elif slip == "double":
            text = text[:i] + text[i] + text[i:]
        elif slip == "swap" and i + 1 < len(text):
            text = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        elif slip == "replace":
            text = text[:i] + draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz -'é")) + text[i + 1 :]
        elif slip == "case":
            text = text[:i] + text[i].swapcase() + text[i + 1 :]
    return text


texts = st.one_of(
    st.sampled_from(NAMES),
    typo(st.sampled_from(NAMES)),
    st.builds(
        lambda a, b: f"{a} {b}",
        st.sampled_from(["paediatric", "severe", "chronic", "acute", "refractory"]),
        st.sampled_from(NAMES),
    ),
    st.text(max_size=MAX_TEXT + 20),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),  # lone surrogates
    st.sampled_from(["", " ", "\n\t", "x" * (MAX_TEXT + 1), "chronic fatigue", "’", "-", "ß" * 50]),
)

diagnoses = st.one_of(
    st.fixed_dictionaries({}, optional={"code": codes, "text": texts}),
    st.fixed_dictionaries({"code": codes}),
    st.fixed_dictionaries({"text": texts}),
    st.fixed_dictionaries({"code": codes, "text": texts}),
    st.fixed_dictionaries({"code": codes}, optional={"icd": st.just("G61.0")}),  # an unknown field
    st.sampled_from([None, "G61.0", ["G61.0"], 61, {"code": None, "text": None}]),  # wrong shapes
)

# --- Patient facts -----------------------------------------------------------------------------

valid_ages = st.one_of(
    st.sampled_from([0, 0.0, 1e-9, 2, 11.99, 12, 15, 17, 17.99, 18, 18.0, 129.99, MAX_AGE_YEARS, float(MAX_AGE_YEARS)]),
    st.integers(0, MAX_AGE_YEARS),
    st.floats(0, MAX_AGE_YEARS),
)
ages = st.one_of(
    valid_ages,
    st.sampled_from([-1, -0.01, 130.01, 131, 1e308, -1e308, math.inf, -math.inf, math.nan, 10**309, -(10**309)]),
    st.integers(min_value=MAX_AGE_YEARS + 1),
    st.integers(max_value=-1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["18", "", True, False, [], {}, [18]]),
)
sexes = st.one_of(st.sampled_from(SEXES), st.sampled_from(["Female", " MALE ", "f", "", "woman", 1, True]))
pregnancies = st.one_of(st.booleans(), st.sampled_from(["true", 0, 1, "no"]))
weights = st.one_of(st.floats(0.3, 500), st.sampled_from([0, 0.29, 500.01, 10**400, "70", math.nan]))
heights = st.one_of(st.floats(20, 260), st.sampled_from([19.99, 260.01, -5, 10**400, "170", math.inf]))
refs = st.one_of(st.text(min_size=1, max_size=MAX_REF + 4), st.sampled_from(["MRN-0042", "", " ", 42, None]))

patients = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "age_years": ages,
            "sex": sexes,
            "pregnant": pregnancies,
            "weight_kg": weights,
            "height_cm": heights,
            "ref": refs,
        },
    ),
    st.fixed_dictionaries(
        {"age_years": valid_ages}, optional={"sex": st.sampled_from(SEXES), "pregnant": st.booleans()}
    ),
    st.fixed_dictionaries({}, optional={"age_years": ages, "dob": st.just("2001-01-01")}),  # an unknown field
    st.sampled_from([None, [], "8 years", 8]),
)

# --- Therapies, severity, product, dose ----------------------------------------------------------

THERAPY_NAMES = sorted({spelling for t in RULEBOOK.therapies.values() for spelling in (t.id, t.name, *t.synonyms)})
therapy_names = st.one_of(
    st.sampled_from(THERAPY_NAMES),
    st.sampled_from(THERAPY_NAMES).map(str.upper),
    st.sampled_from(["aspirin", "unknownumab", "", " ", "prednisone;rituximab", "cortico steroids"]),
    st.text(max_size=30),
    st.sampled_from([None, 1, ["prednisone"], {"name": "prednisone"}]),
)
therapy_lists = st.one_of(st.lists(therapy_names, max_size=4), st.sampled_from([None, "prednisone", {}, 3]))
therapies = st.one_of(
    st.fixed_dictionaries({}, optional={"failed": therapy_lists, "concurrent": therapy_lists}),
    st.fixed_dictionaries({}, optional={"failed": therapy_lists, "previous": st.just(["rituximab"])}),
    st.sampled_from([None, [], "prednisone"]),
)
severities = st.one_of(st.sampled_from(SEVERITIES), st.sampled_from(["Severe", " mild ", "critical", "", 3, None]))
PRODUCT_NAMES = sorted(RULEBOOK.products)
products = st.one_of(
    st.sampled_from(PRODUCT_NAMES),
    st.sampled_from(PRODUCT_NAMES).map(str.lower),
    st.sampled_from(PRODUCT_NAMES).map(lambda name: name.replace(" ", "-")),
    st.sampled_from(["Octagam", "Hizentra", "IVIG", "", "privigen 10%", 1, ["Privigen"]]),
    st.text(max_size=20),
)
doses = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "g_per_kg": st.one_of(st.floats(0.01, 5), st.sampled_from([0, 0.009, 5.01, -1, 10**400, "2", math.nan])),
            "interval_days": st.one_of(st.integers(1, 365), st.sampled_from([0, 366, 28.0, 28.5, "28", True, 10**400])),
        },
    ),
    st.sampled_from([None, [], "2 g/kg", 2]),
)

# --- Valid requests and facts to add, for property (e) ---------------------------------------------

FACTS_TO_ADD = {
    "patient.age_years": ("patient", "age_years", valid_ages),
    "patient.sex": ("patient", "sex", st.sampled_from(SEXES)),
    "patient.pregnant": ("patient", "pregnant", st.booleans()),
    "severity": (None, "severity", st.sampled_from(SEVERITIES)),
    "therapies.failed": ("therapies", "failed", st.lists(st.sampled_from(THERAPY_NAMES), max_size=3)),
    "therapies.concurrent": ("therapies", "concurrent", st.lists(st.sampled_from(THERAPY_NAMES), max_size=3)),
    "diagnosis.confirmed_by": ("diagnosis", "confirmed_by", st.sampled_from(sorted(RULEBOOK.specialties))),
    "prescriber.specialty": ("prescriber", "specialty", st.sampled_from(sorted(RULEBOOK.specialties))),
    "diagnosis.phase": ("diagnosis", "phase", st.sampled_from(sorted(RULEBOOK.phases))),
    "course": (None, "course", st.sampled_from(COURSES)),
}
assert set(FACTS_TO_ADD) == set(FACT_FLAGS), "a fact the engine knows is missing from FACTS_TO_ADD"


@st.composite
def valid_requests(draw, diagnoses):
    """A well-formed request on one of these diagnoses, with some facts given."""
    payload = {"diagnosis": draw(diagnoses)}
    for fact in draw(st.sets(st.sampled_from(sorted(FACTS_TO_ADD)), max_size=len(FACTS_TO_ADD))):
        _put(payload, fact, draw(FACTS_TO_ADD[fact][2]))
    patient = payload.get("patient", {})
    if patient.get("sex") == "male" and patient.get("pregnant"):
        del patient["pregnant"]  # refused as conflicting; not a well-formed request
    if draw(st.booleans()):
        payload["product"] = draw(st.sampled_from(PRODUCT_NAMES))
    return payload


approvable = valid_requests(
    st.fixed_dictionaries({"code": st.one_of(spelled(APPROVED_CODES), spelled(RULEBOOK_CODES))})
)
well_formed = valid_requests(
    st.one_of(
        st.fixed_dictionaries(
            {"code": st.one_of(spelled(RULEBOOK_CODES), spelled(DESCENDANTS), spelled(ALL_VALID_CODES))}
        ),
        st.fixed_dictionaries({"text": st.one_of(st.sampled_from(NAMES), typo(st.sampled_from(NAMES)))}),
        st.fixed_dictionaries({"code": spelled(RULEBOOK_CODES), "text": st.sampled_from(NAMES)}),
    )
)
payloads = st.one_of(
    well_formed,
    approvable,
    st.fixed_dictionaries(
        {"diagnosis": diagnoses},
        optional={
            "patient": patients,
            "therapies": therapies,
            "severity": severities,
            "product": products,
            "dose": doses,
        },
    ),
    st.fixed_dictionaries({}, optional={"patient": patients, "severity": severities}),  # no diagnosis
    st.fixed_dictionaries(
        {"diagnosis": diagnoses},
        optional={
            "urgent": st.booleans(),  # an unknown field
            "patient": patients,
        },
    ),
    st.sampled_from([None, [], "G61.0", 0, True, {"diagnosis": {}}]),
)


def _put(payload: dict, fact: str, value) -> dict:
    parent, key, _ = FACTS_TO_ADD[fact]
    if parent and not payload.get(parent):  # "patient": null or [] is accepted as no facts given
        payload[parent] = {}
    (payload[parent] if parent else payload)[key] = value
    return payload


# --- The properties --------------------------------------------------------------------------------


def decide(formulary, payload):
    """(a) and (b): a decision with one of the four outcomes, or None for a refused request."""
    # Notes print with a failure even where a plugin blanks Hypothesis's own "Failing test case" values
    # (schemathesis's pytest plugin does), so every request decided is on record.
    note(f"decide({payload!r})")
    try:
        decision = formulary.decide(payload)
    except RequestError as error:
        event(f"refused: {error.code}")
        assert error.code and error.message, error
        return None
    event(f"outcome: {decision.outcome}")
    assert decision.outcome in OUTCOMES
    return decision


def check_same_again(formulary, payload, decision, other):
    """(c): the same request, after another one, gives the same decision."""
    decide(formulary, copy.deepcopy(other))
    again = decide(formulary, copy.deepcopy(payload))
    assert again is not None, "the same request was refused the second time"
    assert again.to_dict() == decision.to_dict()


def check_consistent(formulary, payload, decision):
    """(d): approved lists labelled products; missing lists only facts the request lacks."""
    rulebook = formulary.rulebook
    facts = parse_request(payload, formulary.vocabulary).facts
    result = decision.to_dict()
    if decision.outcome == "approved":
        assert decision.rule is not None
        rule = rulebook.rule(decision.rule["id"])
        assert rule.labelled_indication, f"rule {rule.id} approves without a labelled indication"
        assert decision.labelled_products, f"approved without labelled products: {result}"
        covering = {
            name for name, label in rulebook.labels_for(rule.labelled_indication) if label.covers_age(facts.age_years)
        }
        assert set(decision.labelled_products) <= covering, result
        if facts.product is not None:
            assert list(decision.labelled_products) == [facts.product], result
    if decision.missing:
        assert decision.outcome == "needs_review", result
        assert decision.rule is not None, result
        known = facts.known()
        for fact in decision.missing:
            if fact not in known:  # an observation or a therapy's weeks, named in words
                assert " taken on or after " in fact or fact.endswith(".weeks") or fact in RULEBOOK.measures, fact
                continue
            assert not known[fact], f"{fact} is listed as missing but the request gives it: {payload}"


def check_adding_facts(formulary, payload, decision, additions):
    """(e): an approved request given one more fact never becomes needs_review for that fact."""
    if decision.outcome != "approved":
        return
    known = parse_request(payload, formulary.vocabulary).facts.known()
    for fact, value in additions:
        if known[fact]:
            continue
        richer = _put(copy.deepcopy(payload), fact, value)
        note(f"adding {fact}={value!r}: {richer}")
        try:
            after = formulary.decide(richer)
        except RequestError:
            continue  # e.g. pregnant true for a male patient: refused, not a decision
        event(f"approved + {fact} -> {after.outcome}")
        assert after.outcome in OUTCOMES
        assert not (after.outcome == "needs_review" and fact in after.missing), (
            f"approved {payload} became needs_review for missing {fact} once {fact}={value!r} was given: {after.to_dict()}"
        )


additions = st.lists(
    st.sampled_from(sorted(FACTS_TO_ADD)), min_size=1, max_size=len(FACTS_TO_ADD), unique=True
).flatmap(lambda facts: st.tuples(*(st.tuples(st.just(f), FACTS_TO_ADD[f][2]) for f in facts)))


BOUNDARY_AGES = [0, 17.99, 18, 130, 130.01, -1, 1e-05, 1e-09, 10**309, math.inf, math.nan, "18", True, [], None]


def with_boundary_ages(test):
    """Explicit examples, run every time: a labelled diagnosis at each boundary age."""
    for age in reversed(BOUNDARY_AGES):
        test = example(payload={"diagnosis": {"code": "D80.0"}, "patient": {"age_years": age}})(test)
    return test


@FAST
@given(payload=payloads)
@with_boundary_ages
def test_decide_returns_one_of_four_outcomes_or_refuses(shipped, payload):
    decide(shipped, payload)


@FAST
@given(payload=payloads, other=payloads)
def test_the_same_request_gives_the_same_decision(shipped, payload, other):
    decision = decide(shipped, payload)
    if decision is not None:
        check_same_again(shipped, payload, decision, other)


@FAST
@given(payload=payloads)
def test_approved_lists_labels_and_missing_names_only_absent_facts(shipped, payload):
    decision = decide(shipped, payload)
    if decision is not None:
        check_consistent(shipped, payload, decision)


@FAST
@given(payload=approvable, added=additions)
def test_adding_a_fact_never_makes_an_approval_miss_it(shipped, payload, added):
    decision = decide(shipped, payload)
    assert decision is not None, f"a well-formed request was refused: {payload}"
    check_adding_facts(shipped, payload, decision, added)


@pytest.mark.long
@LONG
@given(payload=payloads, other=payloads, added=additions)
def test_every_property_on_a_large_sample(shipped, payload, other, added):
    decision = decide(shipped, payload)
    if decision is None:
        return
    check_consistent(shipped, payload, decision)
    check_same_again(shipped, payload, decision, other)
    check_adding_facts(shipped, payload, decision, added)
