"""Every rulebook version the service has served, kept with the texts it was read from.

A version is stored once per digest, in the transaction that records its first activation
(service.workflow.active_rulebook.record_activation); activations stay in rulebook_activations.
A stored version is found by its version string, and by a prefix of its digest when two stored
versions share the string; its texts read back into a Rulebook with the normal reader.
"""

import json
import re
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from service import clock
from service.rulebook.model import Rulebook
from service.rulebook.reader import digest_texts, load_rulebook_texts
from service.store.tables import rulebook_activations, rulebook_versions

_DIGEST_PREFIX = re.compile(r"[0-9a-f]{4,64}")
_SUMMARY_COLUMNS = [c for c in rulebook_versions.c if c.name != "texts"]


class VersionNotFound(LookupError):
    """No stored version matches."""


class AmbiguousVersion(LookupError):
    """Several stored versions match; `digests` names them."""

    def __init__(self, version: str, digests: list[str]):
        self.version, self.digests = version, digests
        super().__init__(f"{len(digests)} stored rulebooks are version {version}: {', '.join(digests)}")


@dataclass(frozen=True)
class VersionRef:
    """How a stored version is named: its version string, and optionally a prefix of its digest."""

    version: str
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> "VersionRef":
        """`version` or `version@digestprefix` (at least four hexadecimal digits)."""
        version, _, digest = text.rpartition("@") if "@" in text else (text, "", "")
        return cls(version, digest or None)


def store_version(connection: Connection, rulebook: Rulebook, by: str) -> bool:
    """Keep `rulebook` with its texts unless its digest is kept already; True when it was stored now."""
    if digest_texts(rulebook.texts) != rulebook.digest:  # the reader computes one from the other
        raise ValueError(f"rulebook {rulebook.version}: its texts do not give its digest {rulebook.digest}")
    insert = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
    result = connection.execute(
        insert(rulebook_versions)
        .values(
            name=rulebook.name,
            version=rulebook.version,
            effective=rulebook.effective,
            digest=rulebook.digest,
            texts=json.dumps(rulebook.texts, ensure_ascii=False),
            stored_at=clock.utc_now(),
            stored_by=by,
        )
        .on_conflict_do_nothing(index_elements=["digest"])
        .returning(rulebook_versions.c.id)
    )
    return result.first() is not None


def is_stored(engine: Engine, digest: str) -> bool:
    """Whether the version with this digest is kept."""
    with engine.connect() as connection:
        return (
            connection.execute(select(rulebook_versions.c.id).where(rulebook_versions.c.digest == digest)).first()
            is not None
        )


def list_versions(engine: Engine) -> list[dict]:
    """Every stored version, newest first, each with its activations (newest first), without texts."""
    with engine.connect() as connection:
        versions = connection.execute(select(*_SUMMARY_COLUMNS).order_by(rulebook_versions.c.id.desc())).all()
        activations = connection.execute(select(rulebook_activations).order_by(rulebook_activations.c.id.desc())).all()
    by_digest: dict[str, list[dict]] = {}
    for activation in activations:
        by_digest.setdefault(activation.digest, []).append(_activation(activation))
    return [_summary(row, by_digest.get(row.digest, [])) for row in versions]


def find_version(engine: Engine, ref: VersionRef) -> dict:
    """One stored version with its texts and activations; raises VersionNotFound or AmbiguousVersion."""
    query = select(rulebook_versions).where(rulebook_versions.c.version == ref.version)
    if ref.digest is not None:
        prefix = ref.digest.lower()
        if not _DIGEST_PREFIX.fullmatch(prefix):
            raise VersionNotFound(f"{ref.digest!r} is not a digest or its first four or more hexadecimal digits")
        query = query.where(rulebook_versions.c.digest.startswith(prefix, autoescape=True))
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(rulebook_versions.c.id)).all()
        if not rows:
            named = f"{ref.version}@{ref.digest}" if ref.digest else ref.version
            raise VersionNotFound(f"no stored rulebook version {named}")
        if len(rows) > 1:
            raise AmbiguousVersion(ref.version, [row.digest for row in rows])
        activations = connection.execute(
            select(rulebook_activations)
            .where(rulebook_activations.c.digest == rows[0].digest)
            .order_by(rulebook_activations.c.id.desc())
        ).all()
    return _with_texts(rows[0], [_activation(a) for a in activations])


def version_with_digest(engine: Engine, digest: str) -> dict:
    """The stored version with exactly this digest; raises VersionNotFound."""
    with engine.connect() as connection:
        row = connection.execute(select(rulebook_versions).where(rulebook_versions.c.digest == digest)).first()
    if row is None:
        raise VersionNotFound(f"no stored rulebook with digest {digest}")
    return find_version(engine, VersionRef(row.version, row.digest))


def read_stored(version: dict) -> Rulebook:
    """A stored version's texts read back with the normal reader; RulebookError when they no
    longer give the digest they were stored under, or do not load."""
    return load_rulebook_texts(version["texts"], digest=version["digest"])


def stored_rulebook(engine: Engine, ref: VersionRef) -> Rulebook:
    """The stored version `ref` names, read back; VersionNotFound, AmbiguousVersion, RulebookError."""
    return read_stored(find_version(engine, ref))


def _summary(row, activations: list[dict]) -> dict:
    return {
        "version": row.version,
        "digest": row.digest,
        "name": row.name,
        "effective": row.effective,
        "stored_at": row.stored_at,
        "stored_by": row.stored_by,
        "activations": activations,
    }


def _with_texts(row, activations: list[dict]) -> dict:
    texts = json.loads(row.texts)
    try:
        intact = digest_texts(texts) == row.digest
    except ValueError:
        intact = False
    return {**_summary(row, activations), "texts": texts, "intact": intact}


def _activation(row) -> dict:
    return {"activated_at": row.activated_at, "activated_by": row.activated_by}
