"""Checks that make a committee's edit safe to load: `formulary lint` and every (re)load run them.

Loading (service.rulebook.reader) already refuses schema errors, undefined sources, therapies, products
and indications. Lint adds what needs the whole rulebook: codes that do not exist, a code claimed
by two diagnoses, a synonym that names two diagnoses, rules that can clash with no precedence,
labelled indications that no rule approves or names the products of, diagnoses no rule uses, and rulesets too large for
durable-rules.
"""
from pathlib import Path

from service.rulebook import icd10

from service.rulebook import precedence
from service.rulebook.compiler import CompileError, compile_rulebook, rules_by_code
from service.rulebook.model import Rulebook, RulebookError
from service.rulebook.reader import load_rulebook, read_yaml
from service.rulebook.text_keys import fold


def lint_rulebook(rulebook: Rulebook) -> list[str]:
    where = str(rulebook.path)
    problems = []
    owner: dict[str, str] = {}
    spellings: dict[str, str] = {}
    for dx in rulebook.diagnoses.values():
        for code in dx.codes:
            if not icd10.is_valid(code):
                problems.append(f"{where}: diagnosis {dx.id}: codes: '{code}' is not an ICD-10-CM code")
                continue
            plain = icd10.normalise(code)
            if plain in owner:
                problems.append(f"{where}: diagnosis {dx.id}: codes: {code} is already a code of diagnosis {owner[plain]}")
            owner.setdefault(plain, dx.id)
        for spelling in (dx.name, *(s.term for s in dx.synonyms)):
            key = fold(spelling)
            if spellings.setdefault(key, dx.id) != dx.id:
                problems.append(
                    f"{where}: diagnosis {dx.id}: synonym '{spelling}' also names diagnosis {spellings[key]}"
                )
        for synonym in dx.synonyms:
            if synonym.code is not None and not (
                icd10.is_valid(synonym.code) and icd10.covered_by(icd10.normalise(synonym.code), dx.codes)
            ):
                problems.append(
                    f"{where}: diagnosis {dx.id}: synonym '{synonym.term}': code {synonym.code} is not an ICD-10-CM "
                    "code covered by the diagnosis's codes"
                )
    if problems:
        return problems  # the checks below assume every code is valid and owned once

    used = {r.diagnosis for r in rulebook.rules}
    for dx_id in rulebook.diagnoses:
        if dx_id not in used:
            problems.append(f"{where}: diagnosis {dx_id}: no rule uses it")
    approved = {r.labelled_indication for r in rulebook.rules}
    named = {product for r in rulebook.rules for product in (r.when.product or ())}
    for indication in sorted({l.indication for p in rulebook.products.values() for l in p.labels}):
        products = {name for name, _ in rulebook.labels_for(indication)}
        if indication not in approved and not products <= named:
            problems.append(
                f"{where}: indication {indication}: products are labelled for it but no approved rule uses it "
                f"and no rule names {', '.join(sorted(products - named))}"
            )
    for code, rules in sorted(rules_by_code(rulebook).items()):
        for a, b, example in precedence.ambiguities(rules):
            problems.append(
                f"{where}: rule {b.id}: can match the same request as rule {a.id} on {icd10.dotted(code)} "
                f"(e.g. {example}) with a different outcome ({b.outcome} vs {a.outcome}) and no precedence "
                "between them; give one a higher priority or narrow its conditions"
            )
    if not problems:
        try:
            compile_rulebook(rulebook)
        except CompileError as error:
            problems.append(f"{where}: {error}")
    return problems


def is_rulebook_file(path: Path) -> bool:
    """A YAML file whose top level has a `rulebook:` header (test-case files do not)."""
    try:
        content = read_yaml(path)
    except RulebookError:
        return True  # let linting report the broken file
    return isinstance(content, dict) and "rulebook" in content


def lint_paths(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Lint each rulebook file, or every rulebook file in each folder: (files linted, problems)."""
    files, problems = [], []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.glob("*.yaml") if is_rulebook_file(p))
            if not found:
                problems.append(f"{path}: no rulebook file (*.yaml with a 'rulebook:' header) found")
            files += found
        elif path.exists():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    for file in files:
        try:
            problems += lint_rulebook(load_rulebook(file))
        except RulebookError as error:
            problems += error.problems
    return files, problems
