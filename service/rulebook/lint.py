"""Checks that make a committee's edit safe to load: `formulary lint` and every (re)load run them.

Loading (service.rulebook.reader) already refuses schema errors, undefined sources, therapies, products
and indications. Lint adds what needs the whole rulebook: codes that do not exist, a code claimed
by two diagnoses, a synonym that names two diagnoses, rules that can clash with no precedence,
labelled indications that no rule approves or names the products of, diagnoses no rule uses, maintenance
rules without review criteria, and rulesets too large for durable-rules.
"""

from pathlib import Path

from service.rulebook import icd10, precedence
from service.rulebook.compiler import CompileError, compile_rulebook, rules_by_code
from service.rulebook.model import POSITIVE_OUTCOMES, Diagnosis, Rulebook, RulebookError
from service.rulebook.reader import load_rulebook, read_yaml
from service.rulebook.text_keys import fold


def load_checked(path: str | Path) -> Rulebook:
    """Load a rulebook and lint it; a rulebook with any problem is refused (RulebookError lists them).

    What serving a rulebook takes: the service, a reload and the CLI never decide on one that lint refuses.
    """
    return checked(load_rulebook(path))


def checked(rulebook: Rulebook) -> Rulebook:
    """The rulebook, if lint finds nothing; else RulebookError with every problem."""
    problems = lint_rulebook(rulebook)
    if problems:
        raise RulebookError(problems)
    return rulebook


def lint_rulebook(rulebook: Rulebook) -> list[str]:
    where = str(rulebook.path)
    problems = _diagnosis_problems(rulebook, where)
    if problems:
        return problems  # the checks below assume every code is valid and owned once
    problems = (
        _unused_diagnoses(rulebook, where)
        + _uncovered_indications(rulebook, where)
        + _continuation_problems(rulebook, where)
        + _ambiguous_rules(rulebook, where)
    )
    return problems or _compile_problems(rulebook, where)


def _diagnosis_problems(rulebook: Rulebook, where: str) -> list[str]:
    """Each diagnosis's codes, spellings and pinned synonym codes, in the rulebook's order."""
    problems = []
    owner: dict[str, str] = {}  # plain code -> the diagnosis that claimed it first
    spellings: dict[str, str] = {}  # folded name or synonym -> its diagnosis
    for dx in rulebook.diagnoses.values():
        problems += _code_problems(dx, owner, where)
        problems += _spelling_problems(dx, spellings, where)
        problems += _synonym_code_problems(dx, where)
    return problems


def _code_problems(dx: Diagnosis, owner: dict[str, str], where: str) -> list[str]:
    """Codes that are not ICD-10-CM codes, and codes another diagnosis already claims."""
    problems = []
    for code in dx.codes:
        if not icd10.is_valid(code):
            problems.append(f"{where}: diagnosis {dx.id}: codes: '{code}' is not an ICD-10-CM code")
            continue
        plain = icd10.normalise(code)
        if plain in owner:
            problems.append(f"{where}: diagnosis {dx.id}: codes: {code} is already a code of diagnosis {owner[plain]}")
        owner.setdefault(plain, dx.id)
    return problems


def _spelling_problems(dx: Diagnosis, spellings: dict[str, str], where: str) -> list[str]:
    """A name or synonym that, folded, also names another diagnosis: a text could not tell them apart."""
    problems = []
    for spelling in (dx.name, *(s.term for s in dx.synonyms)):
        key = fold(spelling)
        if spellings.setdefault(key, dx.id) != dx.id:
            problems.append(f"{where}: diagnosis {dx.id}: synonym '{spelling}' also names diagnosis {spellings[key]}")
    return problems


def _synonym_code_problems(dx: Diagnosis, where: str) -> list[str]:
    """A synonym pinned to a code that is not one of its diagnosis's codes (or below one)."""
    return [
        f"{where}: diagnosis {dx.id}: synonym '{synonym.term}': code {synonym.code} is not an ICD-10-CM "
        "code covered by the diagnosis's codes"
        for synonym in dx.synonyms
        if synonym.code is not None
        and not (icd10.is_valid(synonym.code) and icd10.covered_by(icd10.normalise(synonym.code), dx.codes))
    ]


def _unused_diagnoses(rulebook: Rulebook, where: str) -> list[str]:
    used = {r.diagnosis for r in rulebook.rules}
    return [f"{where}: diagnosis {dx_id}: no rule uses it" for dx_id in rulebook.diagnoses if dx_id not in used]


def _uncovered_indications(rulebook: Rulebook, where: str) -> list[str]:
    """A labelled indication that no approved rule uses and whose products no rule names: requests
    for it could never be approved on the label."""
    problems = []
    approved = {r.labelled_indication for r in rulebook.rules}
    named = {product for r in rulebook.rules for product in (r.when.product or ())}
    for indication in sorted({label.indication for p in rulebook.products.values() for label in p.labels}):
        products = {name for name, _ in rulebook.labels_for(indication)}
        if indication not in approved and not products <= named:
            problems.append(
                f"{where}: indication {indication}: products are labelled for it but no approved rule uses it "
                f"and no rule names {', '.join(sorted(products - named))}"
            )
    return problems


def _continuation_problems(rulebook: Rulebook, where: str) -> list[str]:
    """A maintenance rule that grants authorisations must say how a continuation is judged (the
    grams go to maintenance, and stopping without benefit is where stewardship saves them); review
    criteria on a rule that grants nothing would never be read."""
    problems = []
    for rule in rulebook.rules:
        grants = rulebook.grants_authorisation(rule.outcome)
        if grants and rulebook.is_maintenance(rule) and rule.review_criteria is None:
            problems.append(
                f"{where}: rule {rule.id}: a maintenance rule (dosing {rulebook.dosing_for(rule).id}, repeated "
                "courses) that grants authorisations needs review_criteria: the measures a continuation "
                "needs and what counts as benefit, or reviewer_judges"
            )
        if rule.outcome not in POSITIVE_OUTCOMES and (
            rule.review_criteria is not None or rule.continuing_days is not None
        ):
            problems.append(
                f"{where}: rule {rule.id}: review_criteria and authorisation.continuing_days apply only to a "
                f"rule with a positive outcome, not {rule.outcome}"
            )
    return problems


def _ambiguous_rules(rulebook: Rulebook, where: str) -> list[str]:
    """Two rules that can match one request with different outcomes and nothing to choose between them."""
    return [
        f"{where}: rule {b.id}: can match the same request as rule {a.id} on {icd10.dotted(code)} "
        f"(e.g. {example}) with a different outcome ({b.outcome} vs {a.outcome}) and no precedence "
        "between them; give one a higher priority or narrow its conditions"
        for code, rules in sorted(rules_by_code(rulebook).items())
        for a, b, example in precedence.ambiguities(rules)
    ]


def _compile_problems(rulebook: Rulebook, where: str) -> list[str]:
    """What durable-rules would refuse or hang on (see service.rulebook.compiler)."""
    try:
        compile_rulebook(rulebook)
    except CompileError as error:
        return [f"{where}: {error}"]
    return []


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
            load_checked(file)
        except RulebookError as error:
            problems += error.problems
    return files, problems
