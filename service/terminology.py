"""Turning what a prescriber typed (a code, a diagnosis name) into an ICD-10-CM code.

A code is accepted in any case, with or without its dot, and must exist in the official code
set. A text is matched, after folding case, accents and punctuation, against each diagnosis's
name and synonyms in the rulebook. A text that matches nothing is not guessed at: the decision
goes to review.
"""
import re
import unicodedata
from dataclasses import asdict, dataclass

from . import icd10
from .request import RequestError
from .rulebook import Rulebook


@dataclass(frozen=True)
class DiagnosisMatch:
    code: str | None            # dotted, or None when nothing was recognised
    description: str | None
    matched_by: str | None      # "code" or "synonym"; None when unrecognised
    input: str                  # what the user typed

    @property
    def plain_code(self) -> str | None:
        return None if self.code is None else icd10.normalise(self.code)

    def to_dict(self) -> dict:
        return asdict(self)


def fold(text: str) -> str:
    """Case, accents, apostrophes, dots and punctuation folded away: "Guillain-Barré" -> "guillain barre"."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    plain = re.sub(r"['`.\u2019]", "", plain)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", plain).split())


class Terminology:
    def __init__(self, rulebook: Rulebook):
        self._names: dict[str, str] = {}
        for diagnosis in rulebook.diagnoses.values():
            for spelling in (diagnosis.name, *diagnosis.synonyms):
                self._names.setdefault(fold(spelling), icd10.normalise(diagnosis.codes[0]))

    def resolve(self, code: str | None, text: str | None) -> DiagnosisMatch:
        if code is not None:
            plain = icd10.normalise(code)
            if not icd10.is_valid(plain):
                raise RequestError("invalid_code", f"diagnosis.code '{code}' is not an ICD-10-CM code", "diagnosis.code")
            return DiagnosisMatch(icd10.dotted(plain), icd10.description(plain), "code", code)
        found = self._names.get(fold(text))
        if found is None:
            return DiagnosisMatch(None, None, None, text)
        return DiagnosisMatch(icd10.dotted(found), icd10.description(found), "synonym", text)
