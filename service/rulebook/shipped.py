"""Which rulebook file to serve when none is named: FORMULARY_RULEBOOK, else the one shipped in rules/.

The service's instance, the CLI and the tests all start from here, so they agree on it.
"""

import os
from pathlib import Path

SHIPPED_RULEBOOK = Path(__file__).resolve().parents[2] / "rules" / "ivig.yaml"


def default_rulebook_path() -> Path:
    return Path(os.environ.get("FORMULARY_RULEBOOK") or SHIPPED_RULEBOOK)
