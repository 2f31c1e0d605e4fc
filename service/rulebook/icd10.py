"""ICD-10-CM codes: how they are spelled, whether they exist, and which codes a code covers.

Codes are kept dotless and upper-case inside the engine (`G610`), because a code covers its
descendants exactly when it is a prefix of them; they are shown dotted (`G61.0`).

The code set is the release the pinned simple-icd-10-cm package ships. Parsing its XML takes about
2 s, so what is used of it (each code, its description and inclusion terms, in the release's
order) is kept in the cache folder (service/rulebook/disk_cache.py), read on first use, and built
again from the package when the package or this module changes.
"""

import os
import re
from functools import cached_property, lru_cache
from importlib.metadata import distribution, version

from service.rulebook import disk_cache

PACKAGE = "simple-icd-10-cm"
# The code set every decision is made on: the ICD-10-CM release the pinned package ships. Recorded
# with each decision beside the rulebook's digest, since a new release can change what a text or
# code resolves to.
RELEASE = f"ICD-10-CM as shipped by simple-icd-10-cm {version(PACKAGE)}"

# Letter, two characters, then up to four more: the shape of a category, subcategory or full code.
_CODE_SHAPE = re.compile(r"^[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}$")
CATEGORY_LENGTH = 3
MAX_LENGTH = 7


class CodeSet:
    """The release's categories, subcategories and extended subcategories (chapters and blocks are not
    codes a prescriber or a rule can use), each part read from the cache when first used: a code
    check reads only the descriptions."""

    def __init__(self, source: dict):
        self.source = source

    def _part(self, name: str, kind: type):
        return disk_cache.cached(
            f"icd10cm-{name}", self.source, lambda: build_code_set()[name], lambda value: isinstance(value, kind)
        )

    @cached_property
    def descriptions(self) -> dict[str, str]:
        """Dotless code -> its description."""
        return self._part("descriptions", dict)

    @cached_property
    def terms(self) -> dict[str, tuple[str, ...]]:
        """Dotless code -> its inclusion terms, for the codes that have any."""
        return self._part("terms", dict)

    @cached_property
    def order(self) -> list[str]:
        """The dotless codes in the release's order (its tree, depth first), each as often as the
        package lists it (a block holding one category has the category's name: both are listed)."""
        return self._part("order", list)

    @cached_property
    def _position(self) -> dict[str, int]:
        return {code: i for i, code in enumerate(self.order)}  # the last listing: the code itself

    def descendants(self, plain: str) -> list[str]:
        """The dotless codes below a code, in the release's order (they follow it, sharing its prefix)."""
        order, found = self.order, []
        for i in range(self._position[plain] + 1, len(order)):
            if not order[i].startswith(plain):
                break
            found.append(order[i])
        return found


@lru_cache(maxsize=1)
def source() -> dict:
    """What the code set is built from: the package's version and installed files (their hashes
    as recorded at install, sizes and times), and this module."""
    package = distribution(PACKAGE)
    files = {}
    for file in package.files or ():
        if file.parts[0] == "simple_icd_10_cm" and "__pycache__" not in file.parts:
            status = os.stat(file.locate())
            files[str(file)] = [file.hash.value if file.hash else None, status.st_size, status.st_mtime_ns]
    return {"package": PACKAGE, "version": package.version, "files": files, "code": disk_cache.file_digest(__file__)}


@lru_cache(maxsize=1)
def build_code_set() -> dict:
    """The code set as the package reads it from its XML (slow: the cache keeps it)."""
    import simple_icd_10_cm as cm

    order = [
        code
        for code in cm.get_all_codes(with_dots=False)
        if cm.is_category_or_subcategory(code) or cm.is_extended_subcategory(code)
    ]
    return {
        "order": order,
        "descriptions": {code: cm.get_description(code) for code in order},
        "terms": {code: tuple(terms) for code in order if (terms := cm.get_inclusion_term(code))},
    }


@lru_cache(maxsize=1)
def code_set() -> CodeSet:
    return CodeSet(source())


def normalise(code: str) -> str:
    """The dotless upper-case spelling of a code as a person may type it (` g61.0 ` -> `G610`)."""
    return code.strip().upper().replace(".", "").replace(" ", "")


def dotted(code: str) -> str:
    """The display spelling of a dotless code (`G610` -> `G61.0`)."""
    return code if len(code) <= CATEGORY_LENGTH else f"{code[:CATEGORY_LENGTH]}.{code[CATEGORY_LENGTH:]}"


def is_valid(code: str) -> bool:
    """True for a category, subcategory or full code of the ICD-10-CM release the package ships."""
    plain = normalise(code)
    return bool(_CODE_SHAPE.match(plain)) and plain in code_set().descriptions


def description(code: str) -> str:
    """The official description of a valid code."""
    try:
        return code_set().descriptions[normalise(code)]
    except KeyError:
        raise ValueError(f"the code {code!r} is not in {RELEASE}") from None


def inclusion_terms(code: str) -> list[str]:
    """The inclusion terms the release lists under a valid code."""
    description(code)
    return list(code_set().terms.get(normalise(code), ()))


def descendants(code: str) -> list[str]:
    """The dotless codes below a valid code, in the release's order."""
    description(code)
    return code_set().descendants(normalise(code))


def categories() -> list[str]:
    """Every valid three-character code, in the release's order."""
    return [code for code in code_set().order if len(code) == CATEGORY_LENGTH and is_valid(code)]


def prefixes(code: str) -> list[str]:
    """The codes that cover a dotless code, from its category down to itself."""
    return [code[:length] for length in range(CATEGORY_LENGTH, len(code) + 1)]


def covered_by(code: str, rule_codes) -> bool:
    """Whether a dotless code is one of, or a descendant of, any of these codes."""
    return any(code.startswith(normalise(c)) for c in rule_codes)
