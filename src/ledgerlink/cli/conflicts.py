"""``ledgerlink conflicts``: the review queue of matching, and people's decisions about it.

``list`` and ``show`` read the queue written by ``ledgerlink match run``; ``link``, ``split``
and ``never-link`` record a decision about two records (who, when, why; audited), refused
with the reason when it contradicts a decision in force; ``resolve`` does the same for a
conflict by its id, and ``review`` walks through the queue key by key; ``revoke`` withdraws a
decision; ``decisions`` lists them. Decisions take effect at the next ``ledgerlink match run``, which
never overrides them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ledgerlink.cli._common import EXIT_FAILED, fail, out
from ledgerlink.cli.match import (
    OutputFormat,
    default_actor,
    open_engine,
    open_mappings,
    render_rows,
)

if TYPE_CHECKING:
    from ledgerlink.matching import PartyRecord
    from ledgerlink.matching.persist import Conflict

__all__ = ["app"]

app = typer.Typer(
    help=(
        "Pairs of records that matching could not decide, and people's decisions about them: "
        "list and show the queue, then link, split or never-link two records, or revoke a "
        "decision. Records are written SYSTEM:OBJECT:ID (e.g. stripe:customers:cus_123)."
    ),
    no_args_is_help=True,
)

_LIST_COLUMNS = (
    "id",
    "a",
    "b",
    "reason",
    "probability",
    "customer_a",
    "customer_b",
    "since",
    "status",
    "decision",
)
_ActorOption = Annotated[
    str | None,
    typer.Option(help="Who decides [default: $LEDGERLINK_ACTOR or the login name]."),
]
_ReasonOption = Annotated[str, typer.Option(help="Why, in words; kept in the audit log.")]


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _parse_ref(text: str) -> Any:
    from ledgerlink.matching import PartyRef

    try:
        return PartyRef.parse(text)
    except ValueError as exc:
        fail(str(exc))


@app.command("list")
def list_conflicts(
    ctx: typer.Context,
    system: Annotated[str | None, typer.Option(help="Only pairs with a record of it.")] = None,
    reason: Annotated[
        str | None,
        typer.Option(help="Only this reason (uncertain-score, contradicted-xref, ...)."),
    ] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = (
        OutputFormat.TABLE
    ),
    status: Annotated[
        str | None,
        typer.Option(help="open (waiting) or decided (a decision waits for the next run)."),
    ] = None,
    older_than: Annotated[
        float | None,
        typer.Option(min=0.0, help="Only pairs waiting at least this many days."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many pairs.")] = 100,
) -> None:
    """List the review queue, most likely matches first: id, records, reason and probability."""
    from ledgerlink.matching.persist import list_conflicts as load

    cutoff = None if older_than is None else datetime.now(UTC) - timedelta(days=older_than)
    with open_engine(ctx) as engine:
        items = [
            c
            for c in load(engine, system=system)
            if (reason is None or c.reason == reason)
            and (cutoff is None or c.since <= cutoff)
            and (status is None or _status(c) == status)
        ]
    items = items[:limit]
    if fmt is not OutputFormat.TABLE:
        rows = [
            {
                "id": c.id,
                "a": str(c.a),
                "b": str(c.b),
                "reason": c.reason,
                "probability": round(c.probability, 4),
                "customer_a": c.customer_a,
                "customer_b": c.customer_b,
                "since": _when(c.since),
                "status": _status(c),
                "decision": c.decision,
                "detail": c.detail,
            }
            for c in items
        ]
        out.file.write(render_rows(rows, _LIST_COLUMNS, fmt))
        return
    if not items:
        out.print("the review queue is empty")
        return
    table = Table(
        "id", "record a", "record b", "reason", "probability", "status", title="review queue"
    )
    for c in items:
        state_text = "open" if c.decision is None else f"decided ({c.decision})"
        table.add_row(c.id, str(c.a), str(c.b), c.reason, f"{c.probability:.3f}", state_text)
    out.print(table)
    out.print("look at one with `ledgerlink conflicts show ID`")


def _status(conflict: Conflict) -> str:
    return "open" if conflict.decision is None else "decided"


@app.command("show")
def show(
    ctx: typer.Context,
    conflict_id: Annotated[str, typer.Argument(metavar="ID", help="Conflict id (rv-...).")],
) -> None:
    """Show a pair side by side: each field raw and normalized, the evidence and its weight."""
    from ledgerlink.mapping import Normalizer
    from ledgerlink.matching.persist import MatchStoreError, get_conflict, load_party

    mappings = open_mappings(ctx)
    normalizer = Normalizer(mappings)
    with open_engine(ctx) as engine:
        try:
            conflict = get_conflict(engine, conflict_id)
        except MatchStoreError as exc:
            fail(str(exc))
        a = load_party(engine, normalizer, conflict.a)
        b = load_party(engine, normalizer, conflict.b)
    _print_conflict(conflict, a, b)
    out.print(
        f"decide with `ledgerlink conflicts resolve {conflict.id} --link|--split|--never-link "
        '--reason "..."`'
    )


def _print_conflict(conflict: Conflict, a: PartyRecord | None, b: PartyRecord | None) -> None:
    from ledgerlink.matching import normalize_party

    out.print(
        f"[bold]{conflict.id}[/]: {conflict.reason}, probability {conflict.probability:.3f} "
        f"(weight {conflict.weight:+.2f} bits)"
    )
    if conflict.detail:
        out.print(conflict.detail)
    records = Table("field", str(conflict.a), str(conflict.b), title="records")
    records.add_row("customer", conflict.customer_a, conflict.customer_b)
    fields = ("name", "emails", "phones", "website", "country", "street", "city", "postal_code")
    for name in (*fields, "tax_id"):
        records.add_row(name, _raw(a, name), _raw(b, name))
    if a is not None and b is not None:
        na, nb = normalize_party(a), normalize_party(b)
        for name in ("name", "domains", "emails", "phones", "country", "city", "postal_code"):
            records.add_row(f"[dim]{name} (normalized)[/]", _raw(na, name), _raw(nb, name))
    out.print(records)
    evidence = Table("field", "comparison", "weight (bits)", title="evidence")
    for item in conflict.evidence:
        evidence.add_row(item["field"], item["label"], f"{item['weight']:+.2f}")
    out.print(evidence)


def _raw(record: object, name: str) -> str:
    if record is None:
        return "[dim](record not available)[/]"
    value = getattr(record, name, None)
    if isinstance(value, (tuple, frozenset, set, list)):
        return ", ".join(sorted(str(v) for v in value)) or "-"
    return "-" if value in (None, "") else str(value)


def _decide(
    ctx: typer.Context, kind_name: str, ref_a: str, ref_b: str, reason: str, actor: str | None
) -> None:
    from ledgerlink.matching import DecisionKind
    from ledgerlink.matching.persist import MatchStoreError, record_decision

    kind = DecisionKind(kind_name)
    a, b = _parse_ref(ref_a), _parse_ref(ref_b)
    if not reason.strip():
        fail("give a --reason: decisions are audited")
    who = actor or default_actor()
    with open_engine(ctx) as engine:
        try:
            decision_id = record_decision(
                engine, kind, a, b, actor=who, reason=reason, now=datetime.now(UTC)
            )
        except MatchStoreError as exc:
            fail(str(exc), code=EXIT_FAILED)
    out.print(
        f"decision {decision_id}: {kind.value} {a} {b} by {who}; "
        "it takes effect at the next `ledgerlink match run`"
    )


_RefA = Annotated[str, typer.Argument(metavar="REF_A", help="SYSTEM:OBJECT:ID")]
_RefB = Annotated[str, typer.Argument(metavar="REF_B", help="SYSTEM:OBJECT:ID")]


@app.command("link")
def link(
    ctx: typer.Context,
    ref_a: _RefA,
    ref_b: _RefB,
    reason: _ReasonOption,
    actor: _ActorOption = None,
) -> None:
    """Decide that two records are the same company; later runs always keep them together."""
    _decide(ctx, "link", ref_a, ref_b, reason, actor)


@app.command("split")
def split(
    ctx: typer.Context,
    ref_a: _RefA,
    ref_b: _RefB,
    reason: _ReasonOption,
    actor: _ActorOption = None,
) -> None:
    """Split two records that matching joined; later runs keep them in different customers."""
    _decide(ctx, "split", ref_a, ref_b, reason, actor)


@app.command("never-link")
def never_link(
    ctx: typer.Context,
    ref_a: _RefA,
    ref_b: _RefB,
    reason: _ReasonOption,
    actor: _ActorOption = None,
) -> None:
    """Decide that two records are different companies, whatever their scores say."""
    _decide(ctx, "never-link", ref_a, ref_b, reason, actor)


@app.command("resolve")
def resolve(
    ctx: typer.Context,
    conflict_id: Annotated[str, typer.Argument(metavar="ID", help="Conflict id (rv-...).")],
    reason: _ReasonOption,
    link_: Annotated[bool, typer.Option("--link", help="Same company.")] = False,
    split_: Annotated[bool, typer.Option("--split", help="Not joined, for now.")] = False,
    never: Annotated[bool, typer.Option("--never-link", help="Different companies.")] = False,
    actor: _ActorOption = None,
) -> None:
    """Decide a conflict of the queue by its id: --link, --split or --never-link its two records."""
    from ledgerlink.matching.persist import MatchStoreError, get_conflict

    chosen = [
        name for name, on in (("link", link_), ("split", split_), ("never-link", never)) if on
    ]
    if len(chosen) != 1:
        fail("give exactly one of --link, --split, --never-link")
    with open_engine(ctx) as engine:
        try:
            conflict = get_conflict(engine, conflict_id)
        except MatchStoreError as exc:
            fail(str(exc))
    _decide(ctx, chosen[0], str(conflict.a), str(conflict.b), reason, actor)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    decision_id: Annotated[
        int, typer.Argument(metavar="DECISION_ID", help="From `ledgerlink conflicts decisions`.")
    ],
    reason: Annotated[str, typer.Option(help="Why it is withdrawn.")] = "",
    actor: _ActorOption = None,
) -> None:
    """Withdraw a decision; the next run matches the pair on the evidence alone."""
    from ledgerlink.matching.persist import MatchStoreError, revoke_decision

    who = actor or default_actor()
    with open_engine(ctx) as engine:
        try:
            row = revoke_decision(
                engine, decision_id, actor=who, now=datetime.now(UTC), reason=reason
            )
        except MatchStoreError as exc:
            fail(str(exc))
    out.print(f"decision {row.id} ({row.decision}) revoked by {who}")


@app.command("decisions")
def decisions(
    ctx: typer.Context,
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked ones.")] = False,
) -> None:
    """List people's decisions, newest first: id, kind, records, who, when and why."""
    from ledgerlink.matching.persist import list_decisions

    with open_engine(ctx) as engine:
        rows = list_decisions(engine, include_revoked=include_revoked)
    if not rows:
        out.print("no decisions recorded")
        return
    table = Table("id", "decision", "record a", "record b", "by", "at", "reason", "revoked")
    for row in rows:
        table.add_row(
            str(row.id),
            row.decision.replace("_", "-"),
            f"{row.left_system}:{row.left_object}:{row.left_external_id}",
            f"{row.right_system}:{row.right_object}:{row.right_external_id}",
            row.actor,
            _when(row.created_at),
            row.reason,
            "-" if row.revoked_at is None else f"{_when(row.revoked_at)} by {row.revoked_by}",
        )
    out.print(table)


_KEYS = {"l": "link", "s": "split", "n": "never-link"}


@app.command("review")
def review(
    ctx: typer.Context,
    system: Annotated[str | None, typer.Option(help="Only pairs with a record of it.")] = None,
    actor: _ActorOption = None,
) -> None:
    """Walk through the open pairs of the review queue, most likely first: press l to link,
    s to split, n to never-link, k to skip, q to quit; a decision asks for its reason.
    """
    from ledgerlink.mapping import Normalizer
    from ledgerlink.matching import DecisionKind
    from ledgerlink.matching.persist import (
        MatchStoreError,
        load_party,
        record_decision,
    )
    from ledgerlink.matching.persist import (
        list_conflicts as load,
    )

    normalizer = Normalizer(open_mappings(ctx))
    who = actor or default_actor()
    decided = skipped = 0
    with open_engine(ctx) as engine:
        queue = [c for c in load(engine, system=system) if c.decision is None]
        if not queue:
            out.print("the review queue is empty")
            return
        for number, conflict in enumerate(queue, start=1):
            out.rule(f"{number} of {len(queue)}")
            a = load_party(engine, normalizer, conflict.a)
            b = load_party(engine, normalizer, conflict.b)
            _print_conflict(conflict, a, b)
            out.print(
                "[bold]l[/] link  [bold]s[/] split  [bold]n[/] never-link  "
                "[bold]k[/] skip  [bold]q[/] quit"
            )
            key = ""
            while key not in (*_KEYS, "k", "q"):
                key = typer.getchar().lower()
            if key == "q":
                break
            if key == "k":
                skipped += 1
                continue
            reason = typer.prompt("reason", default="reviewed in conflicts review")
            try:
                decision_id = record_decision(
                    engine,
                    DecisionKind(_KEYS[key]),
                    conflict.a,
                    conflict.b,
                    actor=who,
                    reason=reason,
                    now=datetime.now(UTC),
                )
            except MatchStoreError as exc:
                out.print(f"[red]{exc}[/]")
                continue
            decided += 1
            out.print(f"decision {decision_id}: {_KEYS[key]}")
    out.print(
        f"{decided} decided, {skipped} skipped; run `ledgerlink match run` to apply the decisions"
    )
