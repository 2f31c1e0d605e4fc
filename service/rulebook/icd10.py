"""ICD-10-CM codes: how they are spelled, whether they exist, and which codes a code covers.

Codes are kept dotless and upper-case inside the engine (`G610`), because a code covers its
descendants exactly when it is a prefix of them; they are shown dotted (`G61.0`).
"""

import re
from importlib.metadata import version

import simple_icd_10_cm as cm

# The code set every decision is made on: the ICD-10-CM release the pinned package ships. Recorded
# with each decision beside the rulebook's digest, since a new release can change what a text or
# code resolves to.
RELEASE = f"ICD-10-CM as shipped by simple-icd-10-cm {version('simple-icd-10-cm')}"

# Letter, two characters, then up to four more: the shape of a category, subcategory or full code.
_CODE_SHAPE = re.compile(r"^[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}$")
CATEGORY_LENGTH = 3
MAX_LENGTH = 7


def normalise(code: str) -> str:
    """The dotless upper-case spelling of a code as a person may type it (` g61.0 ` -> `G610`)."""
    return code.strip().upper().replace(".", "").replace(" ", "")


def dotted(code: str) -> str:
    """The display spelling of a dotless code (`G610` -> `G61.0`)."""
    return code if len(code) <= CATEGORY_LENGTH else f"{code[:CATEGORY_LENGTH]}.{code[CATEGORY_LENGTH:]}"


def is_valid(code: str) -> bool:
    """True for a category, subcategory or full code of the ICD-10-CM release the package ships.

    Chapters and blocks ("M30-M36") are not codes a prescriber or a rule can use.
    """
    plain = normalise(code)
    return (
        bool(_CODE_SHAPE.match(plain))
        and cm.is_valid_item(plain)
        and (cm.is_category_or_subcategory(plain) or cm.is_extended_subcategory(plain))
    )


def description(code: str) -> str:
    """The official description of a valid code."""
    return cm.get_description(normalise(code))


def prefixes(code: str) -> list[str]:
    """The codes that cover a dotless code, from its category down to itself."""
    return [code[:length] for length in range(CATEGORY_LENGTH, len(code) + 1)]


def covered_by(code: str, rule_codes) -> bool:
    """Whether a dotless code is one of, or a descendant of, any of these codes."""
    return any(code.startswith(normalise(c)) for c in rule_codes)
