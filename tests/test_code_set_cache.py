"""The ICD-10-CM code set and its text index, read from the cache folder: the same answers as the
package itself, used only when built from the same source, and rebuilt when it is not or the file is
damaged."""

import json
import os

import pytest
import simple_icd_10_cm as cm

from service.decide import terminology
from service.decide.terminology import Terminology, TextIndex, icd_text_entries, nearest_codes
from service.rulebook import disk_cache, icd10
from service.rulebook.reader import load_rulebook
from service.rulebook.text_keys import fold
from tests.conftest import TEST_RULEBOOK

CODE_SET, TEXT_INDEX = icd10.code_set, terminology.icd_text_index


@pytest.fixture
def fresh_caches():
    """The code set and text index read again in the test, and again after it."""
    CODE_SET.cache_clear()
    TEXT_INDEX.cache_clear()
    yield
    CODE_SET.cache_clear()
    TEXT_INDEX.cache_clear()


def builds(monkeypatch, module, name):
    """Count the calls of a builder, which still builds."""
    calls = []
    real = getattr(module, name)

    def counted():
        calls.append(1)
        return real()

    counted.cache_clear = real.cache_clear  # type: ignore[attr-defined]
    monkeypatch.setattr(module, name, counted)
    return calls


# --- the cache folder, on small values -------------------------------------------------------------


def test_a_value_is_built_once_and_then_read(tmp_path, monkeypatch):
    monkeypatch.setenv("FORMULARY_CACHE_DIR", str(tmp_path))
    calls = []

    def build():
        calls.append(1)
        return {"G610": ("Guillain-Barre syndrome", ("Acute infective polyneuritis",))}

    first = disk_cache.cached("codes", {"version": "1"}, build, lambda v: isinstance(v, dict))
    again = disk_cache.cached("codes", {"version": "1"}, build, lambda v: isinstance(v, dict))
    assert first == again
    assert len(calls) == 1
    assert (tmp_path / "codes.marshal").stat().st_mode & 0o077 == 0


def test_a_value_built_from_another_source_is_built_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FORMULARY_CACHE_DIR", str(tmp_path))
    disk_cache.cached("codes", {"version": "1"}, lambda: ["old"], lambda v: True)
    assert disk_cache.cached("codes", {"version": "2"}, lambda: ["new"], lambda v: True) == ["new"]
    header = json.loads((tmp_path / "codes.marshal").read_bytes().split(b"\n", 1)[0])
    assert header["source"] == {"version": "2"}  # rewritten for the new source
    assert disk_cache.cached("codes", {"version": "2"}, lambda: ["never"], lambda v: True) == ["new"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-3] + bytes([data[-3] ^ 1]) + data[-2:],  # a flipped bit in the data
        lambda data: data[: len(data) // 2],  # cut short
        lambda data: b"not json\n" + data.split(b"\n", 1)[1],  # an unreadable header
        lambda data: b"",  # empty
    ],
    ids=["flipped bit", "truncated", "bad header", "empty"],
)
def test_a_damaged_file_is_built_again_and_rewritten(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("FORMULARY_CACHE_DIR", str(tmp_path))
    value = {"G610": "Guillain-Barre syndrome", "D839": "Common variable immunodeficiency, unspecified"}
    disk_cache.cached("codes", {"version": "1"}, lambda: value, lambda v: True)
    path = tmp_path / "codes.marshal"
    path.write_bytes(damage(path.read_bytes()))
    assert disk_cache.cached("codes", {"version": "1"}, lambda: value, lambda v: True) == value
    assert disk_cache.cached("codes", {"version": "1"}, lambda: pytest.fail("rebuilt"), lambda v: True) == value


def test_data_that_matches_its_digest_but_not_the_expected_shape_is_built_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FORMULARY_CACHE_DIR", str(tmp_path))
    disk_cache.cached("codes", {"version": "1"}, lambda: ["a list"], lambda v: True)
    assert disk_cache.cached("codes", {"version": "1"}, lambda: {"a": "dict"}, lambda v: isinstance(v, dict)) == {
        "a": "dict"
    }


def test_a_file_others_may_write_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("FORMULARY_CACHE_DIR", str(tmp_path))
    disk_cache.cached("codes", {"version": "1"}, lambda: ["planted"], lambda v: True)
    os.chmod(tmp_path / "codes.marshal", 0o666)
    assert disk_cache.cached("codes", {"version": "1"}, lambda: ["built"], lambda v: True) == ["built"]
    assert (tmp_path / "codes.marshal").stat().st_mode & 0o077 == 0  # replaced by the service's own


def test_a_folder_that_cannot_be_written_only_costs_a_build(tmp_path, monkeypatch):
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")
    monkeypatch.setenv("FORMULARY_CACHE_DIR", str(blocked))
    assert disk_cache.cached("codes", {"version": "1"}, lambda: ["built"], lambda v: True) == ["built"]


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("FORMULARY_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert disk_cache.cache_dir() == tmp_path / "formulary"
    monkeypatch.setenv("FORMULARY_CACHE_DIR", str(tmp_path / "mine"))
    assert disk_cache.cache_dir() == tmp_path / "mine"


# --- the code set: the package's answers, from the cache ----------------------------------------------


@pytest.fixture(scope="module")
def package_codes():
    return cm.get_all_codes(with_dots=False)


def test_every_code_is_valid_exactly_when_the_package_says_so(fresh_caches, package_codes):
    typed = package_codes + [c + "9" for c in package_codes[::50]] + [c[:-1] for c in package_codes[::50]]
    typed += ["G61.0", "g610", " M31.3 ", "A00-A09", "1", "G61.", "Z99.999", "QA0", "C7A", "XX1"]
    for code in typed:
        plain = icd10.normalise(code)
        by_package = bool(icd10._CODE_SHAPE.match(plain)) and (
            cm.is_valid_item(plain) and (cm.is_category_or_subcategory(plain) or cm.is_extended_subcategory(plain))
        )
        assert icd10.is_valid(code) is by_package, code


def test_descriptions_terms_and_descendants_are_the_package_s(fresh_caches, package_codes):
    for code in package_codes:
        if icd10.is_valid(code):
            assert icd10.description(code) == cm.get_description(code), code
            assert icd10.inclusion_terms(code) == cm.get_inclusion_term(code), code
            assert icd10.descendants(code) == [icd10.normalise(c) for c in cm.get_descendants(code)], code
    categories = [c for c in package_codes if len(c) == icd10.CATEGORY_LENGTH and icd10.is_valid(c)]
    assert icd10.categories() == categories
    with pytest.raises(ValueError):
        icd10.description("Z99.999")


def test_the_text_index_holds_the_package_s_texts_and_matches_as_one_built_in_memory(fresh_caches):
    entries = []
    for code in cm.get_all_codes(with_dots=False):
        if cm.is_category_or_subcategory(code) or cm.is_extended_subcategory(code):
            entries.append((fold(cm.get_description(code)), code))
            entries += [(fold(term), code) for term in cm.get_inclusion_term(code)]
    entries = [(text, code) for text, code in entries if text]
    assert icd_text_entries() == entries
    built, cached = TextIndex(entries), terminology.icd_text_index()
    assert isinstance(cached, terminology.CachedTextIndex)
    assert cached.source["code_set"] == icd10.source()  # a new code set or folding builds it again
    assert cached.source["code"] == disk_cache.file_digest(terminology.__file__, terminology.text_keys.__file__)
    for part in ("exact_index", "key_index", "texts", "codes", "postings", "words_by_length"):
        assert getattr(cached, part) == getattr(built, part), part


TEXTS = [
    "guillain barre",
    "Guillain-Barré syndrome",
    "kawasaki",
    "alzheimers",
    "chronic fatigue",
    "guilain bare",
    "chronic inflamatory demyelinating polyneuropathy",
    "myastenia gravis with exacerbation",
    "secondary immunodeficiency",
    "encephalitis of unspecified or other cause",
    "no such diagnosis whatsoever",
]
CODES = [("G61.0", None), ("g610", "kawasaki"), ("M31.3", "granulomatosis"), ("D83.9", "secondary cvid")]
INVALID = ["G61.9X", "M31.39", "Z99.999", "Q99Q"]


def _answers(terms: Terminology) -> list:
    found: list = [terms.resolve(None, text) for text in TEXTS]
    found += [terms.resolve(code, text) for code, text in CODES]
    found += [nearest_codes(icd10.normalise(code)) for code in INVALID]
    found += [terms.names_of(code) for code in ("G610", "D839", "M313")]
    return found


def test_answers_are_the_same_from_a_new_cache_a_reread_one_and_the_index_built_in_memory(
    fresh_caches, tmp_path, monkeypatch
):
    rulebook = load_rulebook(TEST_RULEBOOK)
    monkeypatch.setenv("FORMULARY_CACHE_DIR", str(tmp_path))
    code_set_builds = builds(monkeypatch, icd10, "build_code_set")
    new = _answers(Terminology(rulebook))  # built from the package and written
    assert code_set_builds  # built from the package
    icd10.code_set.cache_clear()
    terminology.icd_text_index.cache_clear()
    monkeypatch.setattr(icd10, "build_code_set", lambda: pytest.fail("the code set was built again"))
    monkeypatch.setattr(terminology, "_text_index_parts", lambda: pytest.fail("the text index was built again"))
    reread = _answers(Terminology(rulebook))
    built = TextIndex(icd_text_entries())
    monkeypatch.setattr(terminology, "icd_text_index", lambda: built)
    in_memory = _answers(Terminology(rulebook))
    assert new == reread == in_memory


def test_a_new_package_version_or_changed_files_rebuild_the_code_set(fresh_caches, monkeypatch):
    real = icd10.source()
    icd10.code_set().descriptions  # noqa: B018  (read from this session's cache)
    calls = builds(monkeypatch, icd10, "build_code_set")
    icd10.build_code_set.cache_clear()
    for changed in ({**real, "version": "0.0.1"}, {**real, "files": {**real["files"], "data/extra.xml": [None, 1, 1]}}):
        icd10.code_set.cache_clear()
        monkeypatch.setattr(icd10, "source", lambda changed=changed: changed)
        assert icd10.description("G61.0") == "Guillain-Barre syndrome"
        assert icd10.is_valid("G61.0") and not icd10.is_valid("G61.9X")
    assert len(calls) == 2  # once per source; the package parsed once for both (build_code_set's own cache)
    icd10.build_code_set.cache_clear()
