"""The keys texts are compared by: diagnosis names and synonyms when the rulebook is linted, and
what a prescriber types when a request is decided.

Both must fold a text the same way, or lint would pass two synonyms that the service then reads
as one diagnosis; so the folding lives here, below the rulebook's checks and the decision path.
"""

import re
import unicodedata

_DROPPED = re.compile(r"['`.\u2019]")
_POSSESSIVE = re.compile(r"(?<=[a-z0-9])['`\u2019]s\b")
_SEPARATORS = re.compile(r"[^a-z0-9]+")
# Words that do not change which diagnosis a text names ("Kawasaki disease" = "Kawasaki").
FILLER_WORDS = frozenset(
    {"syndrome", "syndromes", "disease", "diseases", "disorder", "disorders", "of", "the", "nos", "unspecified"}
)


def fold(text: str) -> str:
    """Case, accents, apostrophes, dots and punctuation folded away: "Guillain-Barré" -> "guillain barre"."""
    text = _POSSESSIVE.sub("", text.lower())
    if not text.isascii():
        text = _DROPPED.sub("", text)  # before NFKD, which would turn the curly apostrophe into a space
        # Other punctuation and spaces (en dash, no-break space) separate words, like their ASCII kin.
        text = "".join(" " if unicodedata.category(ch)[0] in "PZ" else ch for ch in text)
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _SEPARATORS.sub(" ", _DROPPED.sub("", text.lower())).strip()


def _key_word(word: str) -> str:
    """A word without a trailing possessive or plural "s" ("alzheimers", "kawasakis", "sclerosis" alike);
    words of four letters or fewer keep theirs, since short ones are mostly acronyms (APDS is not APD)."""
    return word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word


def match_key(folded: str) -> str:
    """The text as exact matching compares it: filler words dropped, a trailing "s" off each word.

    Two texts with one key name the same thing in every way a prescriber means ("Alzheimer's",
    "alzheimers disease"); the word order and every other word still count.
    """
    return " ".join(_key_word(word) for word in folded.split() if word not in FILLER_WORDS)
