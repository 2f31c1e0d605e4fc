"""The `formulary` command: ask for a decision, list the formulary, lint a rulebook.

This module holds the command group and the commands that decide without an instance (`check`,
`diagnose`, `lint`), with only what they import; every other command is in `commands.py`, loaded
when it is used.
"""

import json
import re
import sys
import textwrap
from pathlib import Path

import click

from service.decide.decision import OUTCOME_WORDS, Decision
from service.decide.formulary import Formulary
from service.decide.request import RequestError, Vocabulary, parse_request
from service.decide.terminology import Terminology
from service.rulebook.lint import lint_paths
from service.rulebook.model import RulebookError
from service.rulebook.reader import load_rulebook
from service.rulebook.shipped import default_rulebook_path

rulebook_option = click.option(
    "--rulebook",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Rulebook file (default: $FORMULARY_RULEBOOK, else rules/ivig.yaml).",
)


class _Commands(click.Group):
    """The quick commands are defined in this module; the others, in `service.cli.commands` (which
    loads the database, the workflow and the web server's dependencies), are loaded only when one of
    them is asked for or every command is listed, so `check` and `lint` start in a fraction of a second."""

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.commands:
            import service.cli.commands  # noqa: F401  (its commands join this group)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx):
        import service.cli.commands  # noqa: F401

        return super().list_commands(ctx)


@click.group(cls=_Commands)
def main():
    """IVIG formulary: prior-authorisation decisions from a declarative rulebook."""


def _load(path: Path | None) -> Formulary:
    try:
        return Formulary.load(path)
    except RulebookError as error:
        raise click.ClickException("the rulebook cannot be loaded:\n" + "\n".join(error.problems)) from None


@main.command()
@click.option("--code", help="ICD-10-CM code, with or without the dot (G61.0, g610).")
@click.option("--text", help="Diagnosis in words: a name, synonym or ICD-10-CM description; typos are tolerated.")
@click.option("--age", type=float, help="Patient age in years.")
@click.option("--sex", type=click.Choice(["female", "male", "other", "unknown"]))
@click.option("--pregnant/--not-pregnant", default=None, help="Whether the patient is pregnant.")
@click.option(
    "--failed", multiple=True, help="A therapy that has failed (repeatable); NAME:WEEKS says how long it was tried."
)
@click.option("--no-failed", is_flag=True, help="State that no therapy has failed.")
@click.option("--concurrent", multiple=True, help="A therapy given alongside IVIG (repeatable).")
@click.option("--no-concurrent", is_flag=True, help="State that no other therapy is given alongside.")
@click.option("--severity", type=click.Choice(["mild", "moderate", "severe"]))
@click.option("--product", help="The IVIG product requested.")
@click.option(
    "--route", type=click.Choice(["intravenous", "subcutaneous"]), help="How it is given (default intravenous)."
)
@click.option(
    "--observation",
    "observations",
    multiple=True,
    metavar="MEASURE=VALUEUNIT@DATE",
    help="An observation, e.g. igg_serum=3.2g/L@2026-11-01 (repeatable).",
)
@click.option("--confirmed-by", help="The specialty that confirmed the diagnosis (data/specialties.yaml).")
@click.option("--specialty", help="The prescriber's specialty.")
@click.option("--phase", help="The phase of the disease (data/phases.yaml), e.g. chronic.")
@click.option("--onset-date", help="The date of diagnosis, YYYY-MM-DD: gives the phase when --phase is not given.")
@click.option("--course", type=click.Choice(["initial", "continuation", "one_off"]))
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@rulebook_option
def check(
    code,
    text,
    age,
    sex,
    pregnant,
    failed,
    no_failed,
    concurrent,
    no_concurrent,
    severity,
    product,
    route,
    observations,
    confirmed_by,
    specialty,
    phase,
    onset_date,
    course,
    as_json,
    rulebook,
):
    """Decide one request and explain the decision."""
    diagnosis_facts = (
        ("code", code),
        ("text", text),
        ("confirmed_by", confirmed_by),
        ("phase", phase),
        ("onset_date", onset_date),
    )
    payload: dict = {"diagnosis": {k: v for k, v in diagnosis_facts if v is not None}}
    patient = {k: v for k, v in (("age_years", age), ("sex", sex), ("pregnant", pregnant)) if v is not None}
    if patient:
        payload["patient"] = patient
    therapies = {}
    for kind, given, none in (("failed", failed, no_failed), ("concurrent", concurrent, no_concurrent)):
        if given and none:
            raise click.UsageError(f"--{kind} and --no-{kind} contradict each other")
        if given or none:
            therapies[kind] = [
                _therapy_option(name, kind) for item in given for name in item.split(",") if name.strip()
            ]
    if therapies:
        payload["therapies"] = therapies
    for key, value in (("severity", severity), ("product", product), ("route", route), ("course", course)):
        if value is not None:
            payload[key] = value
    if observations:
        payload["observations"] = [_observation_option(item) for item in observations]
    if specialty is not None:
        payload["prescriber"] = {"specialty": specialty}
    formulary = _load(rulebook)
    try:
        decision = formulary.decide(payload)
    except RequestError as error:
        option = {
            "diagnosis": "--code or --text",
            "diagnosis.code": "--code",
            "diagnosis.text": "--text",
            "diagnosis.confirmed_by": "--confirmed-by",
            "diagnosis.phase": "--phase",
            "diagnosis.onset_date": "--onset-date",
            "prescriber.specialty": "--specialty",
        }
        flag = option.get(error.field or "", error.field)
        if (error.field or "").startswith("observations["):
            index = int((error.field or "").split("[")[1].split("]")[0])
            flag = f"--observation {observations[index]}"
        raise click.UsageError(f"{error.message} ({flag})") from None
    finally:
        formulary.close()
    click.echo(json.dumps(decision.to_dict(), indent=2, ensure_ascii=False) if as_json else _explain(decision))


_OBSERVATION = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*=\s*([-+]?[0-9]+(?:\.[0-9]+)?)\s*([^@\s][^@]*?)\s*@\s*(\S+)\s*$")


def _observation_option(item: str) -> dict:
    """`igg_serum=3.2g/L@2026-11-01` as the API's observation object; checked by request validation."""
    match = _OBSERVATION.match(item)
    if not match:
        raise click.UsageError(
            f"--observation {item!r}: write MEASURE=VALUEUNIT@YYYY-MM-DD, e.g. igg_serum=3.2g/L@2026-11-01"
        )
    measure, value, unit, taken_on = match.groups()
    number = float(value)
    return {
        "measure": measure,
        "value": int(number) if number.is_integer() and "." not in value else number,
        "unit": unit,
        "taken_on": taken_on,
    }


def _therapy_option(item: str, kind: str) -> str | dict:
    """A therapy name, or for --failed NAME:WEEKS the API's {name, weeks} object."""
    name, colon, weeks = item.strip().partition(":")
    if not colon:
        return name
    if kind != "failed" or not weeks.strip().isdigit():
        raise click.UsageError(f"--{kind} {item!r}: write NAME or, for --failed, NAME:WEEKS (whole weeks)")
    return {"name": name, "weeks": int(weeks)}


def _explain(decision: Decision) -> str:
    def wrap(text: str, first: str = "", rest: str = " " * 11) -> str:
        return textwrap.fill(text, 100, initial_indent=first, subsequent_indent=rest)

    dx = decision.diagnosis
    lines = [
        f"Outcome:   {decision.outcome}  ({OUTCOME_WORDS[decision.outcome]})",
        f"Diagnosis: {dx.code or '(not recognised)'} {dx.description or ''}  [matched by {dx.matched_by or 'nothing'}: {dx.input!r}]",
        f"Rule:      {decision.rule['id'] + ': ' + decision.rule['title'] if decision.rule else '(none)'}",
        wrap(decision.rationale, "Rationale: "),
    ]
    if decision.if_confirmed:
        confirmed = decision.if_confirmed
        rule = f" (rule {confirmed['rule']['id']})" if confirmed["rule"] else ""
        lines.append(f"If so:     resubmit with --code {confirmed['code']} to decide: {confirmed['outcome']}{rule}")
    if decision.labelled_products:
        lines.append(f"Labelled:  {', '.join(decision.labelled_products)}")
    if decision.missing:
        lines.append(f"Missing:   {', '.join(decision.missing)}")
    if decision.evidence:
        lines.append("Evidence:")
        for e in decision.evidence:
            graded = f"{e.strength}, {e.effect.replace('_', ' ')}" if e.effect else e.strength
            lines.append(wrap(f"[{e.source}, {graded}] {e.finding}", "  - ", "    "))
    rb = decision.rulebook
    lines.append(f"Rulebook:  {rb['name']} {rb['version']} (sha256 {rb['digest'][:12]}; {rb['icd10cm']})")
    return "\n".join(lines)


@main.command()
@click.argument("text", required=False)
@click.option("--code", help="An ICD-10-CM code, alone or to check against the text.")
@click.option("--json", "as_json", is_flag=True, help="Print the resolution as JSON.")
@rulebook_option
def diagnose(text, code, as_json, rulebook):
    """Show how a typed diagnosis resolves (candidates with scores), without deciding."""
    if text is None and code is None:
        raise click.UsageError("give a diagnosis TEXT, --code, or both")
    try:
        book = load_rulebook(rulebook or default_rulebook_path())
        request = parse_request(
            {"diagnosis": {k: v for k, v in (("code", code), ("text", text)) if v is not None}}, Vocabulary(book)
        )
        match = Terminology(book).resolve(request.code, request.text)
    except RulebookError as error:
        raise click.ClickException("the rulebook cannot be loaded:\n" + "\n".join(error.problems)) from None
    except RequestError as error:
        raise click.UsageError(error.message) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    **match.to_dict(),
                    "score": match.score,
                    "problem": match.problem,
                    "candidates": [c.to_dict() for c in match.candidates],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    click.echo(f"Input:      {match.input!r}")
    if match.code:
        score = f" (score {match.score:g})" if match.score is not None else ""
        click.echo(f"Resolved:   {match.code} {match.description}  [matched by {match.matched_by}{score}]")
    if match.problem:
        click.echo(f"Review:     {match.problem}")
    if match.candidates:
        click.echo("Candidates:")
        for candidate in match.candidates:
            click.echo(f"  {candidate.score:5.1f}  {candidate.code:<9} {candidate.description}")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def lint(paths):
    """Validate rulebooks (files, or folders of them); exit 1 on any problem."""
    files, problems = lint_paths(list(paths) or [default_rulebook_path()])
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s) in {len(files)} rulebook file(s)", err=True)
        sys.exit(1)
    click.echo(f"ok: {len(files)} rulebook file(s) clean: {', '.join(str(f) for f in files)}")
