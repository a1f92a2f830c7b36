"""``ledgerlink trace``: follow one deal from the quote to the books, across every system.

The command is thin: :mod:`ledgerlink.sync.trace` builds the chain from the store; this module
renders it as a tree (or JSON) and turns an unknown reference into exit status 1.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from ledgerlink.cli._common import EXIT_CONFIG, EXIT_FAILED, fail, out, state

if TYPE_CHECKING:
    from rich.tree import Tree

    from ledgerlink.sync.trace import Trace, TraceStep

__all__ = ["render_tree", "trace"]


def _label(step: TraceStep) -> str:
    from rich.markup import escape

    parts = [f"[bold]{escape(step.step)}[/]"]
    if step.ref:
        parts.append(escape(step.ref.split(":", 2)[-1]))
    if step.amount is not None:
        parts.append(escape(step.amount.format()))
    if step.status:
        parts.append(f"[dim]{escape(step.status)}[/]")
    text = "  ".join(parts)
    if step.start:
        text += "  [cyan]<- traced[/]"
    if step.problem:
        text += f"\n[red]x {escape(step.problem)}[/]"
    return text


def render_tree(result: Trace) -> Tree:
    """The chain as a rich tree: one line per step, broken steps in red with the reason."""
    from rich.markup import escape
    from rich.tree import Tree

    def grow(tree: Tree, step: TraceStep) -> None:
        for child in step.children:
            grow(tree.add(_label(child)), child)

    tree = Tree(_label(result.root))
    grow(tree, result.root)
    for note in result.notes:
        tree.add(f"[yellow]note: {escape(note)}[/]")
    return tree


def trace(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(
            help="A record of the chain as system:object:id (stripe:invoices:in_123, "
            "salesforce:Quote:0Q0..., quickbooks:Payment:42), or with --customer a golden customer id.",
            show_default=False,
        ),
    ],
    customer: Annotated[
        bool, typer.Option("--customer", help="REF is a golden customer id: trace all its deals.")
    ] = False,
    report_format: Annotated[str, typer.Option("--format", help="tree or json.")] = "tree",
) -> None:
    """Follow a deal through every system: quote, subscription, invoice, charge, fee, payout,
    credit note, books.

    Shows each link with its id, amount and status, and where the chain is broken and why
    (for example an invoice waiting for its customer to exist in QuickBooks).
    """
    from ledgerlink.store.db import create_engine_for
    from ledgerlink.sync.trace import TraceError, trace_customer
    from ledgerlink.sync.trace import trace as trace_ref

    if report_format not in ("tree", "json"):
        fail(f"--format {report_format!r}: use tree or json", EXIT_CONFIG)
    engine = create_engine_for(state(ctx).config().database.url)
    try:
        result = trace_customer(engine, ref) if customer else trace_ref(engine, ref)
    except TraceError as exc:
        fail(str(exc), EXIT_FAILED)
    finally:
        engine.dispose()
    if report_format == "json":
        out.print(
            json.dumps(result.as_dict(), indent=2), markup=False, highlight=False, soft_wrap=True
        )
        return
    out.print(render_tree(result), soft_wrap=True)
    problems = result.problems
    if problems:
        out.print(f"[red]{len(problems)} broken link(s)[/]", highlight=False)
