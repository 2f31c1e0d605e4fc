"""JSON text out: orjson's speed, and the standard library for what orjson refuses."""

import json

from service.store import json_text
from service.store.audit import canonical


def test_text_is_compact_sorted_on_request_and_utf8():
    assert json_text.dumps({"b": 1, "a": "Guillain–Barré"}, sort_keys=True) == '{"a":"Guillain–Barré","b":1}'
    assert json_text.dumps({"b": 1, "a": 2}) == '{"b":1,"a":2}'


def test_what_orjson_refuses_is_written_with_ascii_escapes_and_reads_back_the_same():
    for value in ({"text": "MRN-\udc00"}, {"n": 10**30}, {1: "a key that is not a string"}):
        text = json_text.dumps(value, sort_keys=True)
        assert text == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert json.loads(text) == json.loads(json.dumps(value))


def test_a_record_with_an_unpaired_surrogate_can_still_be_signed():
    assert canonical({"id": 1, "body": {"request": {"diagnosis": {"text": "\ud800"}}}}).isascii()


def test_flask_indents_as_before_when_asked(app):
    with app.app_context():
        assert app.json.dumps({"a": [1]}, indent=2) == '{\n  "a": [\n    1\n  ]\n}'
        assert app.json.dumps({"b": 1, "a": 2}, separators=(",", ":")) == '{"a":2,"b":1}'  # responses: sorted, compact
