"""The `formulary` commands that work on an instance (its database, audit log, tokens, rulebook
versions) or serve it; loaded by `service.cli`'s group when one of them is used."""

import dataclasses
import datetime
import io
import json
import os
import sys
import textwrap
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from service import clock
from service.cli import _load, _observation_option, main, rulebook_option
from service.decide.decision import OUTCOME_WORDS
from service.decide.formulary import Formulary
from service.decide.request import RequestError, Vocabulary, visible
from service.decide.terminology import Terminology
from service.rulebook.as_data import rulebook_as_data, rules_table
from service.rulebook.diff import diff_as_data
from service.rulebook.model import OUTCOMES, RulebookError
from service.rulebook.reader import load_rulebook
from service.rulebook.shipped import default_rulebook_path
from service.store import cds_clients
from service.store.database import describe
from service.store.instance import Instance
from service.store.rulebook_versions import AmbiguousVersion, VersionNotFound, VersionRef, stored_rulebook
from service.store.tokens import (
    ROLES,
    TokenError,
    active_token_named,
    any_token,
    create_token,
    list_tokens,
    revoke_token,
)
from service.workflow import administrations, cases, csv_out, proposals, reports, usage
from service.workflow import authorisations as authorisation_rows
from service.workflow import replay as replaying
from service.workflow import supply as supply_phases
from service.workflow.active_rulebook import ApprovalsRequired, activate, activated_rulebook, roll_back
from service.workflow.preapproval import check_batch, orders_from_csv


def _instance() -> Instance:
    """The instance from the environment, its database created and migrated if need be."""
    instance = Instance.from_env()
    try:
        _ = instance.database  # migrates it, once
    except SQLAlchemyError as error:
        url = instance.sql_engine.url.render_as_string(hide_password=True)
        raise click.ClickException(f"the database {url} cannot be opened and migrated: {describe(error)}") from None
    context = click.get_current_context(silent=True)
    if context is not None:  # its connections closed when the command ends (in-process callers too)
        context.call_on_close(instance.sql_engine.dispose)
    return instance


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the formulary (or its usage) as JSON.")
@click.option(
    "--usage", "usage_wanted", is_flag=True, help="How often each rule decided, from this instance's audit log."
)
@click.option("--since", help=f"With --usage: from this date, YYYY-MM-DD (default {usage.DEFAULT_DAYS} days ago).")
@click.option("--until", help="With --usage: before this date, YYYY-MM-DD (default: now).")
@rulebook_option
def rules(as_json, usage_wanted, since, until, rulebook):
    """List the formulary: every rule, its conditions, outcome and sources; or, with --usage, how
    often each decided, the rules never reached and the codes no rule decided."""
    if (since or until) and not usage_wanted:
        raise click.UsageError("--since and --until go with --usage")
    try:
        book = load_rulebook(rulebook or default_rulebook_path())
    except RulebookError as error:
        raise click.ClickException("the rulebook cannot be loaded:\n" + "\n".join(error.problems)) from None
    if usage_wanted:
        _print_usage(book, since, until, as_json)
        return
    if as_json:
        click.echo(json.dumps(rulebook_as_data(book), indent=2, ensure_ascii=False))
        return
    rows = rules_table(book)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    click.echo(
        f"{book.name} {book.version}, effective {book.effective}, sha256 {book.digest[:12]}: {len(book.rules)} rules"
    )
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _print_usage(book, since: str | None, until: str | None, as_json: bool) -> None:
    instance = _instance()
    try:
        window = usage.window_from({"since": since or "", "until": until or ""}, clock.utc_today())
    except RequestError as error:
        raise click.UsageError(f"--{error.field}: {error.message}") from None
    found = usage.rule_usage(instance, book, window)
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    click.echo(
        f"{book.name} {book.version}: decisions from {found['since']} "
        f"{'to ' + found['until'] if found['until'] else 'to now'}"
    )
    width = max(len(rule["id"]) for rule in found["rules"])
    for rule in sorted(found["rules"], key=lambda r: (-r["decisions"], r["id"])):
        outcomes = ", ".join(f"{o} {n}" for o, n in rule["outcomes"].items())
        click.echo(f"  {rule['id']:<{width}}  {rule['decisions']:>7}  {outcomes}".rstrip())
    click.echo(f"never reached ({len(found['never_reached'])}): {', '.join(found['never_reached']) or 'none'}")
    for item in found["other_versions_rules"]:
        click.echo(f"  a rule of another version: {item['id']} {item['decisions']}")
    click.echo("no rule decided (codes requests named exactly, most frequent first):")
    for item in found["no_rule"]:
        click.echo(f"  {item['code']:<9} {item['requests']:>7}  {item['description']}")
    if not found["no_rule"]:
        click.echo("  none")
    click.echo(f"requests whose diagnosis was not clear: {found['unclear_diagnosis']}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option(
    "--threads",
    default=32,
    show_default=True,
    type=int,
    envvar="FORMULARY_THREADS",
    help="Threads per worker running requests. Most wait on the audit log's commit, so many share each one.",
)
@click.option(
    "--header-timeout",
    default=10,
    show_default=True,
    type=click.IntRange(1, 60),
    envvar="FORMULARY_HEADER_TIMEOUT",
    help="Seconds a client has to send a request's headers, and an idle kept-alive connection "
    "to start its next request; then the connection is closed.",
)
@click.option(
    "--body-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1, 300),
    envvar="FORMULARY_BODY_TIMEOUT",
    help="Seconds a client has to send a request's whole body (at most 64 KB, 2 MiB for a rulebook proposal); "
    "then it is answered 408 and the connection closed.",
)
def serve(host, port, workers, threads, header_timeout, body_timeout):
    """Run the HTTP service with granian (creates and migrates the database first).

    Each worker's event loop receives a request whole, within the timeouts, before one of its
    threads runs it: a slow or idle client holds a connection, never a thread."""
    instance = _instance()  # create and migrate before the workers start
    if not any_token(instance.database):
        token = create_token(instance.database, "admin", "admin", audit=instance.audit)
        click.echo("No API token existed, so an admin token was created. It is shown only this once:\n")
        click.echo(f"    {token}\n")
        click.echo("Try it:\n")
        click.echo(f"    curl -s -X POST http://{host}:{port}/v1/decisions -H 'Authorization: Bearer {token}' \\")
        click.echo(
            '         -H \'Content-Type: application/json\' -d \'{"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}}\'\n'
        )
    os.environ.update(FORMULARY_THREADS=str(threads), FORMULARY_BODY_TIMEOUT=str(body_timeout))  # for the workers
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "rsgi",
            "--no-ws",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--http1-header-read-timeout",
            str(header_timeout * 1000),
            "--respawn-failed-workers",
            "--respawn-interval",
            "1",
            "--workers-kill-timeout",
            "20",
            "--factory",
            "service.web.app:create_served_app",
        ],
    )


@main.group()
def tokens():
    """Create, revoke and list API tokens."""


@tokens.command("create")
@click.option("--name", required=True, help="Who or what uses the token (shown in the audit log).")
@click.option("--role", required=True, type=click.Choice(ROLES))
def tokens_create(name, role):
    """Create a token; it is printed once, as the last line."""
    instance = _instance()
    try:
        token = create_token(instance.database, name, role, audit=instance.audit)
    except TokenError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"token for {name} ({role}); store it now, it is not shown again:")
    click.echo(token)


@tokens.command("revoke")
@click.argument("name")
def tokens_revoke(name):
    """Revoke the token with this name."""
    instance = _instance()
    try:
        revoke_token(instance.database, name, audit=instance.audit)
    except TokenError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"revoked {name}")


@tokens.command("list")
def tokens_list():
    """Token names, roles and dates (never the tokens)."""
    for row in list_tokens(_instance().database):
        click.echo(
            f"{row['name']:<24} {row['role']:<11} created {row['created_at']}"
            + (f"  revoked {row['revoked_at']}" if row["revoked_at"] else "")
        )


@main.group("cds-clients")
def cds_clients_group():
    """The EHRs (CDS Clients) allowed to call the CDS Hooks service, with their keys."""


@cds_clients_group.command("add")
@click.option("--iss", required=True, help="The client's JWT issuer (iss), exactly as its JWTs carry it.")
@click.option(
    "--jwks", "jwks_file", required=True, type=click.File("r"), help="A file with the client's public JWK Set (JSON)."
)
@click.option("--jku", default=None, help="The one URL the client's JWK Set may also be fetched from (its jku).")
@click.option(
    "--fhir-server",
    "fhir_servers",
    multiple=True,
    help="A FHIR base URL the service may fetch from when the client's calls name it (repeatable).",
)
def cds_clients_add(iss, jwks_file, jku, fhir_servers):
    """Allow a CDS client (on the audit record as cds_client_added)."""
    instance = _instance()
    try:
        added = cds_clients.add_client(
            instance.database, instance.audit, iss, jwks_file.read(), jku, list(fhir_servers), "cli"
        )
    except cds_clients.ClientError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"added {added['iss']} (keys {', '.join(added['kids'])})")


@cds_clients_group.command("list")
def cds_clients_list():
    """The allowed CDS clients: iss, key ids, jku, FHIR servers, when added and by whom."""
    for row in cds_clients.list_clients(_instance().database):
        click.echo(
            f"{row['iss']}  keys {', '.join(row['kids'])}  jku {row['jku'] or '-'}  "
            f"fhir {', '.join(row['fhir_servers']) or '-'}  added {row['added_at']} by {row['added_by']}"
        )


@cds_clients_group.command("remove")
@click.option("--iss", required=True)
def cds_clients_remove(iss):
    """Remove a CDS client (on the audit record as cds_client_removed); its JWTs are refused from now on."""
    instance = _instance()
    try:
        cds_clients.remove_client(instance.database, instance.audit, iss, "cli")
    except cds_clients.ClientError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"removed {iss}")


@main.group()
def audit():
    """Check the audit log offline."""


@audit.command("verify")
@click.option(
    "--since-anchor",
    is_flag=True,
    help="Check only from the newest anchor on: the anchored record (its hash must be the anchor's), every "
    "record after it, the head and the rows they bound. The whole chain when there is no anchor.",
)
def audit_verify(since_anchor):
    """Check the whole chain, the anchors file and the bound rows; exit 1 if anything is broken."""
    result = _instance().audit.verify(since_anchor=since_anchor)
    click.echo(json.dumps(result))
    start = result["from_anchor"]
    if start is not None:
        click.echo(
            f"checked from the anchor written at {start['at']}, which names record {start['id']}: "
            f"{result['records']} records from {start['id']} on, not the {start['id'] - 1} before it "
            "(run without --since-anchor to check the whole chain)"
        )
    anchors = result["anchors"]
    if anchors is not None:
        newest = anchors["newest"]
        click.echo(
            f"anchors: {anchors['anchors']} in {anchors['file']}"
            + (f"; the newest, written at {newest['at']}, names record {newest['id']}" if newest else "")
            + ("; the chain holds every anchored record with its anchored hash" if result["ok"] and newest else "")
        )
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}")
    if not result["ok"]:
        click.echo(f"broken: {result['reason']}")
        sys.exit(1)


@audit.command("bind-existing")
@click.option("--yes", is_flag=True, help="Bind the rows listed, once you have checked them.")
def audit_bind_existing(yes):
    """List the rows of the bound tables (authorisations, resolutions, measurements) not bound to
    an audit record (made before rows were bound, or written outside the service); with --yes, bind
    them in one record."""
    audit = _instance().audit
    rows = audit.unbound_rows()
    for table, row in rows:
        click.echo(f"{table.name} {row['id']} created {row['created_at']}")
    if not rows:
        click.echo("every row is bound")
    elif not yes:
        click.echo(
            f"{len(rows)} rows are not bound and pre-approval refuses them: check that each was made by the "
            "service (against the audit log), then run again with --yes"
        )
    else:
        record = audit.bind_existing(rows, requester="cli")
        click.echo(f"bound {len(rows)} rows in audit record {record['id']}")


@audit.command("head")
def audit_head():
    """The latest record's id and hash: copy them somewhere else to detect later truncation."""
    head = _instance().audit.head()
    click.echo(f"{head['id']} {head['hash']}")


@main.command()
def reload():
    """Lint the rulebook and make it the version every running service serves (within a second)."""
    instance = _instance()
    try:
        summary = activate(
            instance.database,
            instance.audit,
            instance.rulebook_path,
            requested_by="cli",
            approvals=instance.rulebook_approvals,
        )
    except ApprovalsRequired as error:
        raise click.ClickException(f"refused: {error}") from None
    except RulebookError as error:
        raise click.ClickException(
            "refused; the running services keep their version:\n" + "\n".join(error.problems)
        ) from None
    click.echo(f"activated {summary['name']} {summary['version']} ({summary['digest'][:12]})")


@main.group("rulebook")
def rulebook_group():
    """The rulebook versions the service has served."""


@rulebook_group.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
def rulebook_diff(old, new, as_json):
    """What changed from OLD to NEW, rule by rule and field by field. Each is a rulebook file, or
    a version stored in the instance's database: VERSION, or VERSION@DIGEST (its first four or
    more hexadecimal digits) when two stored versions share a version string."""
    instances: list[Instance] = []  # opened only when a stored version is named

    def read(name: str):
        try:
            if Path(name).is_file():
                return load_rulebook(name)
            if not instances:
                instances.append(_instance())
            return stored_rulebook(instances[0].database, VersionRef.parse(name))
        except RulebookError as error:
            raise click.ClickException(f"{name} cannot be read:\n" + "\n".join(error.problems)) from None
        except VersionNotFound as error:
            raise click.ClickException(f"{name} is neither a rulebook file nor a stored version: {error}") from None
        except AmbiguousVersion as error:
            raise click.ClickException(f"{error}; name one as {error.version}@DIGEST") from None

    result = diff_as_data(read(old), read(new))
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    before, after = result["old"], result["new"]
    click.echo(f"{before['version']} ({before['digest'][:12]}) -> {after['version']} ({after['digest'][:12]})")
    for line in result["words"]:
        click.echo(line)


@rulebook_group.command("activate")
@click.argument("version")
@click.option("--reason", required=True, help="Why this stored version is served again (kept on the record).")
def rulebook_activate(version, reason):
    """Serve a stored version again (a rollback): VERSION, or VERSION@DIGEST. Every running service
    follows within a second; `formulary reload` serves the rulebook file again."""
    instance = _instance()
    reason = visible(reason)
    if not reason:
        raise click.UsageError("--reason is empty")
    try:
        _, summary = roll_back(instance.database, instance.audit, VersionRef.parse(version), reason, "cli")
    except VersionNotFound as error:
        raise click.ClickException(str(error)) from None
    except AmbiguousVersion as error:
        raise click.ClickException(f"{error}; name one as {error.version}@DIGEST") from None
    except RulebookError as error:
        raise click.ClickException(
            f"{version} cannot be served; the running services keep their version:\n" + "\n".join(error.problems)
        ) from None
    words = "now served again" if summary["changed"] else "already the version served"
    click.echo(f"{summary['name']} {summary['version']} ({summary['digest'][:12]}): {words}")


@main.command()
@click.option(
    "--rulebook", "candidate", required=True, type=click.Path(path_type=Path), help="The candidate rulebook file."
)
@click.option("--since", help="From this day, YYYY-MM-DD (default: every recorded decision).")
@click.option("--until", help="Before this day, YYYY-MM-DD.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--accept", is_flag=True, help="Exit 0 even when a positive decision would become not_supported.")
def replay(candidate, since, until, as_json, accept):
    """Decide every recorded decision request in the window again on a candidate rulebook, writing
    nothing: what would change. Exit 1 when a positive decision would become not_supported."""
    instance = _instance()
    try:
        window = usage.Window(*(datetime.date.fromisoformat(value) if value else None for value in (since, until)))
    except ValueError:
        raise click.UsageError("--since and --until are dates, YYYY-MM-DD") from None
    formulary = _load(candidate)
    serving = Formulary(_activated(instance))
    try:
        with click.progressbar(length=instance.audit.head()["id"] or 0, label="replaying", file=sys.stderr) as bar:
            report = replaying.replay(instance, formulary, window, progress=bar.update)
        report["continuations"] = replaying.continuations(instance, serving, formulary)
    finally:
        formulary.close()
        serving.close()
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _print_replay(report)
    if report["positive_to_not_supported"] and not accept:
        raise SystemExit(1)


def _print_replay(report: dict) -> None:
    found = report["candidate"]
    click.echo(
        f"{report['replayed']} decisions replayed on {found['name']} {found['version']} ({found['digest'][:12]}); "
        f"{report['changed_total']} would change"
    )
    click.echo("old outcome -> new outcome: count")
    for old, row in report["matrix"].items():
        for new, count in row.items():
            click.echo(f"  {old:<24} -> {new:<24} {count}")
    for item in report["changed"]:
        old, new = item["old"], item["new"]
        click.echo(
            f"  {item['decision_id']}  {item['code'] or '-':<8} {old['outcome']} ({old['rule'] or 'no rule'})"
            f" -> {new['outcome']} ({new['rule'] or 'no rule'})"
        )
    if report["newly_missing_facts"]:
        click.echo(f"{report['newly_missing_facts']} would now need facts their requests did not give")
    if report["unreadable"]:
        click.echo(
            f"{len(report['unreadable'])} requests the candidate cannot read (e.g. {report['unreadable'][0]['message']})"
        )
    if report["positive_to_not_supported"]:
        click.echo(
            f"{len(report['positive_to_not_supported'])} positive decisions would become not_supported "
            "(exit 1 unless --accept)"
        )
    ahead = report.get("continuations")
    if ahead is not None:
        click.echo(
            f"{ahead['considered']} active authorisations; the next continuation of {ahead['changed_total']} "
            "would be decided differently"
        )
        for item in ahead["changed"]:
            old, new = item["old"], item["new"]
            click.echo(
                f"  {item['authorisation_id']}  {item['code']:<8} until {item['valid_until']}: "
                f"{old['outcome']} ({old['rule'] or 'no rule'}) -> {new['outcome']} ({new['rule'] or 'no rule'})"
            )


def _activated(instance: Instance):
    """The version the services serve (activated last), or a ClickException saying why not."""
    try:
        return activated_rulebook(instance.database, instance.rulebook_path)
    except RulebookError as error:
        raise click.ClickException("the rulebook served cannot be read:\n" + "\n".join(error.problems)) from None


@rulebook_group.command("propose")
@click.argument("candidate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--summary", required=True, help="What the change is and why, for the committee.")
@click.option("--tests", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Its rule cases.")
@click.option("--since", help="Replay recorded decisions from this day, YYYY-MM-DD (default: the last 90 days).")
@click.option("--until", help="Replay recorded decisions before this day, YYYY-MM-DD.")
@click.option("--json", "as_json", is_flag=True, help="Print the proposal as JSON.")
@click.option(
    "--as",
    "requester",
    default="cli",
    show_default=True,
    help="The proposer to record: the name of an active token (formulary tokens list), or cli.",
)
def rulebook_propose(candidate, summary, tests, since, until, as_json, requester):
    """Propose CANDIDATE (a rulebook file) as the next version: it is linted, its rule cases run,
    and its diff and replay kept with it; others approve it (API or console) before it is served."""
    instance = _instance()
    _check_requester(instance, requester)
    fields = {"rulebook": candidate.read_text(encoding="utf-8"), "summary": summary, "since": since, "until": until}
    if tests is not None:
        fields["tests"] = tests.read_text(encoding="utf-8")
    serving = Formulary(_activated(instance))
    try:
        found = proposals.propose(instance, serving, proposals.candidate_from(fields, clock.utc_today()), requester)
    except RequestError as error:
        raise click.UsageError(f"{error.field}: {error.message}") from None
    finally:
        serving.close()
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        _print_proposal(found)
    if found["status"] == "failed":
        raise SystemExit(1)


@rulebook_group.command("proposals")
@click.option("--status", type=click.Choice(proposals.STATUSES), help="Only proposals in this state.")
def rulebook_proposals(status):
    """The rulebook proposals, newest first."""
    for item in proposals.list_proposals(_instance(), status):
        click.echo(
            f"{item['id']:>4}  {item['status']:<9} {item['version'] or '-':<14} effective {item['effective'] or '-':<10} "
            f"approvals {item['approvals']}/{item['approvals_required']}  by {item['proposed_by']}: "
            f"{item['summary'].splitlines()[0][:60]}"
        )


@rulebook_group.command("proposal")
@click.argument("proposal_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the proposal as JSON.")
@click.option("--changelog", is_flag=True, help="Print its rules/CHANGELOG.md entry instead.")
def rulebook_proposal(proposal_id, as_json, changelog):
    """One proposal: its checks, changes, replay and votes (or its CHANGELOG entry)."""
    instance = _instance()
    try:
        if changelog:
            click.echo(proposals.changelog_entry(instance, proposal_id), nl=False)
            return
        found = proposals.proposal_detail(instance, proposal_id)
    except (proposals.NoSuchProposal, proposals.ProposalRefused) as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        _print_proposal(found)


def _print_proposal(found: dict) -> None:
    candidate = found["candidate"]
    click.echo(
        f"proposal {found['id']}: {found['status']}; {candidate['version'] or 'unreadable'} against "
        f"{found['base']['version']}; approvals {len(found['approvals'])}/{found['approvals_required']}"
    )
    for problem in found["problems"]:
        click.echo(f"  problem: {problem}")
    checked_cases = found["cases"]
    if checked_cases is not None:
        click.echo(
            f"rule cases ({checked_cases['source']}): {checked_cases['passed']} of {checked_cases['total']} pass"
        )
        if checked_cases.get("problem"):
            click.echo(f"  {checked_cases['problem']}")
        for result in checked_cases["results"]:
            if not result["passed"]:
                click.echo(f"  FAILED {result['name']}: expected {result['expected']}, got {result['got']}")
    if found["diff"] is not None:
        click.echo("changes:")
        for line in found["diff"]["words"] or ["no differences"]:
            click.echo(f"  {line}")
    if found["replay"] is not None:
        _print_replay({**found["replay"], "continuations": found["continuations"]})


as_option = click.option(
    "--as",
    "requester",
    default="cli",
    show_default=True,
    help="The requester to record: the name of an active token (formulary tokens list), or cli.",
)


def _check_requester(instance: Instance, requester: str) -> None:
    if requester != "cli" and active_token_named(instance.database, requester) is None:
        raise click.ClickException(
            f"--as {requester!r}: no active token has this name; name one from 'formulary tokens list', "
            "or leave --as out to be recorded as 'cli'"
        )


@main.command()
@click.argument("orders", type=click.File("r", encoding="utf-8-sig"))
@click.option("--output", type=click.File("w"), default=None, help="Write the results as CSV here.")
@as_option
def preapprove(orders, output, requester):
    """Check a day's infusion list (CSV) for dispensing, as POST /v1/preapprovals/batch does."""
    instance = _instance()
    _check_requester(instance, requester)
    try:
        rows = orders_from_csv(orders.read())
        formulary = Formulary.load(instance.rulebook_path)
    except UnicodeDecodeError:
        raise click.ClickException(f"{orders.name} is not UTF-8 text; export the list as CSV (UTF-8)") from None
    except (RequestError, RulebookError) as error:
        raise click.ClickException(getattr(error, "message", str(error))) from None
    try:
        with click.progressbar(length=len(rows), label="checking orders", file=sys.stderr) as bar:
            results = check_batch(instance, formulary, rows, requester, clock.utc_today(), progress=bar.update)
    finally:
        formulary.close()
    writer = csv_out.Writer(output) if output else None
    if writer:
        writer.writerow(["row", "dispense", "reasons"])
    for result in results:
        if "error" in result:
            verdict, detail = "ERROR", result["error"]["message"]
        else:
            verdict = "dispense" if result["dispense"] else "HOLD"
            detail = "; ".join(r["message"] for r in result["reasons"] if not r["ok"]) or (
                f"{result['dose']['rounded_grams']:g} g" if result["dose"] else ""
            )
        click.echo(f"row {result['row']:>4}  {verdict:<8} {detail}")
        if writer:
            writer.writerow([result["row"], verdict, detail])
    held = sum(1 for r in results if not r.get("dispense"))
    click.echo(f"{len(results)} orders: {len(results) - held} to dispense, {held} held or in error", err=True)


@main.group()
def authorisations():
    """Authorisations due for review, measurements recorded against one, and continuations."""


@authorisations.command("due")
@click.option(
    "--days",
    type=click.IntRange(1, authorisation_rows.MAX_DUE_DAYS),
    default=30,
    show_default=True,
    help="Last valid day within this many days.",
)
@click.option(
    "--overdue/--no-overdue",
    default=True,
    show_default=True,
    help="Also those that ended in the last --days days and were not continued.",
)
def authorisations_due(days, overdue):
    """The authorisations due for review, soonest first, as GET /v1/authorisations?expiring_within_days does."""
    instance = _instance()
    due = authorisation_rows.Due(days, include_overdue=overdue, limit=authorisation_rows.MAX_PAGE)
    try:
        criteria = load_rulebook(instance.rulebook_path).continuation_measures()
    except RulebookError as error:
        raise click.ClickException("the rulebook cannot be loaded:\n" + "\n".join(error.problems)) from None
    listed = []
    while True:
        page = authorisation_rows.due_for_review(instance, due, criteria)
        listed += page["authorisations"]
        if page["next_cursor"] is None:
            break
        due = dataclasses.replace(due, cursor=page["next_cursor"])
    if not listed:
        click.echo(f"no authorisation ends within {days} days" + (" or ended within them" if overdue else ""))
        return
    click.echo(f"{'valid until':<12} {'days left':>9}  {'code':<8} {'basis':<24} {'id':<36}  unmeasured")
    for row in listed:
        click.echo(
            f"{row['valid_until']:<12} {row['days_left']:>9}  {row['code']:<8} {row['basis']:<24} {row['id']}  "
            + (", ".join(row["unmeasured"]) or "-")
        )
    click.echo(f"{len(listed)} authorisations", err=True)


@authorisations.command("measure")
@click.argument("authorisation_id")
@click.option(
    "--observation",
    "observation",
    required=True,
    help="The measurement, e.g. igg_serum=7.1g/L@2026-11-20.",
)
@as_option
def authorisations_measure(authorisation_id, observation, requester):
    """Record a measurement against an authorisation, as POST /v1/authorisations/ID/measurements does."""
    instance = _instance()
    _check_requester(instance, requester)
    body = _observation_option(observation)
    try:
        vocabulary = Vocabulary(load_rulebook(instance.rulebook_path))
        measurement = authorisation_rows.record_measurement(instance, vocabulary, authorisation_id, body, requester)
    except RulebookError as error:
        raise click.ClickException("the rulebook cannot be loaded:\n" + "\n".join(error.problems)) from None
    except RequestError as error:
        raise click.UsageError(f"{error.message} (--observation {observation})") from None
    except authorisation_rows.NoSuchAuthorisation:
        raise click.ClickException(f"no authorisation {authorisation_id}") from None
    click.echo(
        f"recorded {measurement['measure']} {measurement['value']:g} {measurement['unit']} taken on "
        f"{measurement['taken_on']} against {authorisation_id} (measurement {measurement['id']})"
    )


@authorisations.command("continue")
@click.argument("authorisation_id")
@click.option(
    "--observation",
    "observations",
    multiple=True,
    metavar="MEASURE=VALUEUNIT@DATE",
    help="A further current measure, e.g. incat=3points@2026-11-20 (repeatable).",
)
@as_option
def authorisations_continue(authorisation_id, observations, requester):
    """Decide a continuation on the current rulebook, as POST /v1/authorisations/ID/continuation does."""
    instance = _instance()
    _check_requester(instance, requester)
    extra = {"observations": [_observation_option(item) for item in observations]} if observations else {}
    formulary = _load(instance.rulebook_path)
    try:
        decided = cases.continue_authorisation(instance, formulary, authorisation_id, extra, requester)
    except RequestError as error:
        raise click.UsageError(error.message) from None
    except authorisation_rows.NoSuchAuthorisation:
        raise click.ClickException(f"no authorisation {authorisation_id}") from None
    except (authorisation_rows.AlreadyContinued, cases.Conflict) as error:
        raise click.ClickException(str(error)) from None
    except authorisation_rows.Tampered:
        raise click.ClickException(
            f"authorisation {authorisation_id} fails its integrity check: run 'formulary audit verify'"
        ) from None
    finally:
        formulary.close()
    click.echo(f"Outcome:   {decided['outcome']}  ({OUTCOME_WORDS[decided['outcome']]})")
    click.echo(textwrap.fill(decided["rationale"], 100, initial_indent="Rationale: ", subsequent_indent=" " * 11))
    for row in (decided["continuation"] or {}).get("compared", []):
        if row.get("met") is None:
            click.echo(f"  {row['measure']}: not measured ({row['criterion']})")
        else:
            baseline = "-" if row["baseline"] is None else f"{row['baseline']:g}"
            click.echo(
                f"  {row['measure']}: {baseline} -> {row['current']:g} {row['unit']} "
                f"({row['criterion']}): {'met' if row['met'] else 'not met'}"
            )
    if decided["missing"]:
        click.echo(f"Missing:   {', '.join(decided['missing'])}")
    if decided["authorisation_id"]:
        click.echo(f"Granted:   authorisation {decided['authorisation_id']}")
    if decided["review_case_id"]:
        click.echo(f"Review:    case {decided['review_case_id']}")


@main.group("administrations")
def administrations_group():
    """What was given: a pharmacy system's export imported, and the administrations under an authorisation."""


@administrations_group.command("import")
@click.argument("export", type=click.File("r", encoding="utf-8-sig"))
@as_option
def administrations_import(export, requester):
    """Record a pharmacy system's export (CSV; columns in the README), each row checked against its
    authorisation as POST /v1/administrations does. A row whose dispense_id is recorded already is
    counted, not recorded again, so importing the same file twice is safe."""
    instance = _instance()
    _check_requester(instance, requester)
    try:
        text = export.read()
    except UnicodeDecodeError:
        raise click.ClickException(f"{export.name} is not UTF-8 text; export it as CSV (UTF-8)") from None
    try:
        rows = administrations.read_csv(text)
    except RequestError as error:
        raise click.ClickException(error.message) from None
    formulary = _load(instance.rulebook_path)
    try:
        with click.progressbar(length=len(rows), label="importing administrations", file=sys.stderr) as bar:
            summary = administrations.import_rows(instance, formulary, rows, requester, progress=bar.update)
    finally:
        formulary.close()
    for rejected in summary["rejected"]:
        click.echo(f"row {rejected['row']:>4}  {rejected['column']}: {rejected['message']}")
    click.echo(
        f"{summary['rows']} rows: {summary['imported']} imported ({summary['discrepancies']} discrepancies found), "
        f"{summary['already_present']} already present, {len(summary['rejected'])} rejected"
    )
    if summary["rejected"]:
        sys.exit(1)


@administrations_group.command("list")
@click.argument("authorisation_id")
def administrations_list(authorisation_id):
    """The administrations under an authorisation, in the order given, with their discrepancies."""
    listed = administrations.administrations_of(_instance(), authorisation_id)
    if not listed:
        click.echo(f"nothing is recorded as given under authorisation {authorisation_id}")
        return
    for row in listed:
        click.echo(
            f"{row['given_on']}  {row['product']:<18} {row['grams_given']:>7g} g given  {row['grams_wasted']:>5g} g wasted  "
            f"lot {row['lot']}  {row['id']}"
        )
        for found in row["discrepancies"]:
            click.echo(f"    {found['status']:<8} {found['kind']}: {found['message']}")


@main.group("discrepancies")
def discrepancies_group():
    """Discrepancies between what was given and what was authorised: list them, resolve one."""


@discrepancies_group.command("list")
@click.option("--status", type=click.Choice(administrations.STATUSES), default="open", show_default=True)
def discrepancies_list(status):
    """Open discrepancies oldest first, or resolved ones newest first, as GET /v1/discrepancies does."""
    listed = administrations.list_discrepancies(
        _instance(), administrations.DiscrepancyQuery(status, administrations.MAX_PAGE)
    )["discrepancies"]
    for found in listed:
        click.echo(f"{found['id']}  {found['given_on']}  {found['kind']:<20} {found['message']}")
    click.echo(f"{len(listed)} {status} discrepancies", err=True)


@discrepancies_group.command("resolve")
@click.argument("discrepancy_id")
@click.option("--reason", required=True, help="Why it is resolved (kept on the record).")
@as_option
def discrepancies_resolve(discrepancy_id, reason, requester):
    """Resolve a discrepancy with a reason, as POST /v1/discrepancies/ID/resolution does."""
    instance = _instance()
    _check_requester(instance, requester)
    try:
        administrations.resolve(instance, discrepancy_id, {"reason": reason}, requester)
    except RequestError as error:
        raise click.UsageError(error.message) from None
    except administrations.NoSuchDiscrepancy:
        raise click.ClickException(f"no discrepancy {discrepancy_id}") from None
    except administrations.AlreadyResolved as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"resolved discrepancy {discrepancy_id}")


@main.group()
def supply():
    """The instance's supply phase (shortage mode): show it, or set it with a reason."""


def _served_rulebook(instance: Instance):
    try:
        return load_rulebook(instance.rulebook_path)
    except RulebookError as error:
        raise click.ClickException("the rulebook cannot be loaded:\n" + "\n".join(error.problems)) from None


@supply.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print GET /v1/supply's answer as JSON.")
def supply_show(as_json):
    """The phase in force with its reason, what each phase does with each tier, the active
    authorisations by tier, and the history of settings, as GET /v1/supply gives them."""
    instance = _instance()
    overview = supply_phases.overview(instance, _served_rulebook(instance))
    if as_json:
        click.echo(json.dumps(overview, indent=2))
        return
    if overview["phase"] is None:
        click.echo("the rulebook declares no supply phases")
        return
    since = f", set {overview['set_at']} by {overview['set_by']}: {overview['reason']}" if overview["set_at"] else ""
    click.echo(f"supply phase: {overview['phase']}{' (shortage)' if overview['shortage'] else ''}{since}")
    tiers = [t["tier"] for t in overview["tiers"]]
    click.echo(f"{'phase':<12} " + " ".join(f"{tier:<14}" for tier in tiers))
    for phase in overview["phases"]:
        click.echo(f"{phase['phase']:<12} " + " ".join(f"{phase['tiers'][tier]:<14}" for tier in tiers))
    click.echo(
        "active authorisations by tier: "
        + ", ".join(f"{row['tier']} {row['authorisations']}" for row in overview["active_authorisations"])
    )
    for setting in overview["history"]:
        mark = "" if setting["intact"] else "  [fails its integrity check: not followed]"
        click.echo(f"{setting['set_at']}  {setting['phase']:<10} {setting['set_by']}: {setting['reason']}{mark}")


@supply.command("set")
@click.argument("phase")
@click.option(
    "--reason", required=True, help="Why the phase is set (kept on the record and shown on every console page)."
)
@as_option
def supply_set(phase, reason, requester):
    """Set the instance's supply phase to PHASE, one the rulebook declares. Every running service
    follows within a second; the change is an audit record."""
    instance = _instance()
    _check_requester(instance, requester)
    try:
        overview = supply_phases.set_phase(
            instance, _served_rulebook(instance), {"phase": phase, "reason": reason}, requester
        )
    except RequestError as error:
        raise click.UsageError(error.message) from None
    except cases.Conflict as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"supply phase: {overview['phase']} ({overview['reason']})")


@main.group("reports")
def reports_group():
    """Stewardship reports, as GET /v1/reports/* computes them: utilisation by a grouping, and the
    stewardship figures, over a period of whole days (by default the year to today)."""


def _period(since: str | None, until: str | None) -> reports.Period:
    try:
        return reports.period_from({"since": since or "", "until": until or ""}, clock.utc_today())
    except RequestError as error:
        raise click.UsageError(f"--{error.field}: {error.message}") from None


def _with_period(command):
    """The --since and --until options of a report."""
    command = click.option("--until", help="The last day, included, YYYY-MM-DD (default: today).")(command)
    return click.option("--since", help="The first day, YYYY-MM-DD (default: a year before --until).")(command)


@reports_group.command("utilisation")
@_with_period
@click.option("--group-by", type=click.Choice(reports.GROUPS), default="diagnosis", show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="Print the CSV of GET /v1/reports/utilisation.csv.")
@click.option("--json", "as_json", is_flag=True, help="Print GET /v1/reports/utilisation's answer as JSON.")
def reports_utilisation(since, until, group_by, as_csv, as_json):
    """Requests, decisions by outcome, pre-approvals, authorisations, administrations, patients,
    grams (authorised, given, wasted) and cost per group, with the total."""
    if as_csv and as_json:
        raise click.UsageError("--csv and --json are alternatives: give one")
    period = _period(since, until)
    instance = _instance()
    rulebook = _activated(instance)
    report = reports.utilisation(instance, rulebook, Terminology(rulebook), period, group_by)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    rows = reports.utilisation_rows(report)
    if as_csv:
        buffer = io.StringIO()
        writer = csv_out.Writer(buffer)
        for row in rows:
            writer.writerow(row)
        click.echo(buffer.getvalue(), nl=False)
        return
    click.echo(f"utilisation by {group_by}, {period.since} to {period.until}")
    header = (group_by, "requests", *(o.replace("_", " ") for o in OUTCOMES), "patients", "g given", "g wasted")
    table = [header]
    for item in [*report["groups"], {**report["total"], "label": "total"}]:
        table.append(
            (
                item["label"],
                str(item["requests"]),
                *(str(item["decisions"][o]) for o in OUTCOMES),
                str(item["patients"]),
                f"{item['grams_given']:g}",
                f"{item['grams_wasted']:g}",
            )
        )
    _echo_table(table)
    for item in [*report["groups"], {**report["total"], "label": "total"}]:
        cost = "; ".join(f"{c['amount']:,.2f} {c['currency']}" for c in item["cost"]) or "none"
        click.echo(f"cost, {item['label']}: {cost}{' (' + item['cost_note'] + ')' if item['cost_note'] else ''}")
    for note in report["notes"]:
        click.echo(f"note: {note}")


def _echo_table(rows) -> None:
    """Plain text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))]
        click.echo("  ".join(cells).rstrip())


@reports_group.command("stewardship")
@_with_period
@click.option("--json", "as_json", is_flag=True, help="Print GET /v1/reports/stewardship's answer as JSON.")
def reports_stewardship(since, until, as_json):
    """Decisions by outcome and evidence, adherence, orders above the maximum, weight and rounding
    savings, review turnaround, outcome-measure capture and open discrepancies: a figure a line."""
    period = _period(since, until)
    instance = _instance()
    figures = reports.stewardship(instance, _activated(instance), period)
    if as_json:
        click.echo(json.dumps(figures, indent=2, ensure_ascii=False))
        return
    rows = list(reports.stewardship_rows(figures))[1:]
    notes = [(figure, value) for figure, value in rows if figure.endswith("note")]
    shown = [
        (figure, "not known" if value == "" else str(value)) for figure, value in rows if not figure.endswith("note")
    ]
    _echo_table([("figure", "value"), *shown])
    for figure, note in notes:
        click.echo(f"note ({figure.rsplit('.', 1)[0]}): {note}")
