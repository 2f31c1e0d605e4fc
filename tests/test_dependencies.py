"""The dependency tree is pinned. pyproject.toml says what the project needs; requirements.lock (the
project's packages, the test tools included) and requirements-tools.lock (setuptools and uv) pin
every package .venv holds to one version with its hashes, and `make lock` writes both; .venv holds
exactly what they pin. A drift between the three fails here, so it fails `make test`."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
TOOLS_LOCK = ROOT / "requirements-tools.lock"
# In .venv but in no lock: the project itself, and the pip that `python -m venv` brings.
UNLOCKED = {"ivig-formulary", "pip"}


def read_lock(path: Path) -> dict[NormalizedName, tuple[Requirement, list[str]]]:
    """Each package the lock names: its requirement line (name, pin, marker) and its sha256 hashes."""
    entries: dict[NormalizedName, tuple[Requirement, list[str]]] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = re.split(r"\s+(?=--)", line)
        hashes = [option.removeprefix("--hash=sha256:") for option in options]
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{path.name}: {line[:120]}"
        parsed = Requirement(requirement)
        entries[canonicalize_name(parsed.name)] = (parsed, hashes)
    return entries


def pinned_version(requirement: Requirement) -> Version:
    (specifier,) = requirement.specifier
    return Version(specifier.version)


def applies_here(requirement: Requirement, extras: frozenset[str] = frozenset()) -> bool:
    """Whether this interpreter needs the requirement, asked for with these extras."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras | {""})


def locked_here() -> dict[NormalizedName, Requirement]:
    """The pins of both locks that apply to this interpreter (the locks also hold, for example,
    Windows-only packages)."""
    entries = read_lock(LOCK) | read_lock(TOOLS_LOCK)
    return {name: requirement for name, (requirement, _) in entries.items() if applies_here(requirement)}


@pytest.mark.parametrize("lock", [LOCK, TOOLS_LOCK], ids=lambda path: path.name)
def test_every_locked_package_is_pinned_to_one_version_with_a_sha256_hash(lock):
    entries = read_lock(lock)
    assert entries, f"{lock.name} pins nothing"
    for name, (requirement, hashes) in entries.items():
        assert [s.operator for s in requirement.specifier] == ["=="], f"{lock.name}: {name} is not pinned with =="
        assert "*" not in str(requirement.specifier), f"{lock.name}: {name} is pinned with a wildcard"
        assert hashes, f"{lock.name}: {name} has no --hash=sha256:"


def test_every_dependency_in_pyproject_and_all_they_need_is_locked_at_a_version_they_allow():
    """From pyproject.toml's dependencies, test extras and build requirements down through what each
    installed package declares it needs (its extras included) on this interpreter."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    pins = locked_here()
    pending = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    pending += [Requirement(r) for r in pyproject["build-system"]["requires"]]
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    while pending:
        requirement = pending.pop()
        name, extras = canonicalize_name(requirement.name), frozenset(requirement.extras)
        assert name in pins, f"{requirement} is in no lock: run `make lock`"
        pin = pinned_version(pins[name])
        assert requirement.specifier.contains(pin, prereleases=True), (
            f"the lock pins {name}=={pin}, outside {requirement}"
        )
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        declared = [Requirement(r) for r in metadata.requires(name) or []]
        pending += [r for r in declared if applies_here(r, extras)]


def test_the_venv_holds_exactly_the_locked_versions():
    pins = {name: pinned_version(requirement) for name, requirement in locked_here().items()}
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    differ = {
        name: f"{installed.get(name)} installed, {pin} locked"
        for name, pin in pins.items()
        if installed.get(name) != pin
    }
    assert not differ, f"rebuild .venv from the locks (make clean test): {differ}"
    unlocked = sorted(installed.keys() - pins.keys() - UNLOCKED)
    assert not unlocked, (
        f"installed but in no lock (make clean test, or add them to pyproject.toml and make lock): {unlocked}"
    )
