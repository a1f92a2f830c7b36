"""Matching benchmark: ledgerlink against a Splink baseline on the same three-system data.

Run on demand (never in tests):

    python3 dev.py bench matching                       # 10,000 and 100,000 source records
    .venv/bin/python benchmarks/matching.py 10000       # one size
    .venv/bin/python benchmarks/matching.py 10000 100000 --splink-max 10000
    .venv/bin/python benchmarks/matching.py 100000 --no-splink

For each size it generates a deterministic dataset with known truth
(``ledgerlink.matching.synthetic``, seed 2026): Salesforce Accounts, Stripe customers and
QuickBooks Customers as their APIs return them (``Dataset.vendor_rows``), with suffix variants,
typos, accents, free-mail contacts, phone formats, missing fields, country names versus codes,
stale cross-references and hard negatives. The payloads go through the shipped mappings
(``mappings/*.yaml``) and ``matching.adapt``, exactly as landed records do; records the
mappings refuse are counted by reason and left out, as the hub quarantines them.

Both engines then match the same records (all but the last 500), each in its own process so
that each one's peak RSS is its own:

* **ledgerlink**: ``match_all`` (normalize, block, EM fit, score, cluster), then about 1,000
  new or changed records matched incrementally with ``match_new``;
* **splink** (5.x, DuckDB backend): the records normalized by ledgerlink's normalizers (the
  same cleaned name, company domain, e-mail, phone, postcode, city, country and the
  Salesforce Account a record is or names), several blocking rules, ``NameComparison`` and
  exact comparisons with a combined location comparison, the Splink-recommended training
  (random-sampling u, EM on two blocking rules), ``predict`` and
  ``cluster_pairwise_predictions_at_threshold``. It is reported at Splink's usual 0.95
  match probability and at the best of a small threshold sweep chosen with the truth (an
  oracle no production run has; shown as ``splink best@t``).

Reported per engine: records, wall seconds, peak RSS, pairwise and B-cubed precision, recall
and F1, review size (ledgerlink: its review queue; Splink, which has none: predicted pairs
with a probability from 0.50 up to the link threshold, what a clerk would have to look at).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ledgerlink.mapping import Normalizer, RecordMappingError, load_mappings
from ledgerlink.matching import PartyRecord, PartyRef, match_all, match_new, normalize_party
from ledgerlink.matching.adapt import SalesforceIdResolver, party_record
from ledgerlink.matching.synthetic import evaluate, generate_parties

SEED = 2026
PARTIES_PER_COMPANY = 2.2  # a little under the generator's mean, so there are enough rows
INCREMENTAL = 1000
REVIEW_FLOOR = 0.50  # ledgerlink's review threshold; Splink's uncertain band starts here too
SPLINK_DEFAULT_THRESHOLD = 0.95
SPLINK_SWEEP = (0.50, 0.70, 0.80, 0.90, 0.95, 0.99)
RESULT_PREFIX = "RESULT "


@dataclass(frozen=True, slots=True)
class Prepared:
    """The records both engines match, and how long it took to make them."""

    base: list[PartyRecord]
    fresh: list[PartyRecord]
    truth: dict[PartyRef, str]
    source_records: int
    quarantined: Counter[str]
    generate_s: float
    map_s: float


def prepare(size: int) -> Prepared:
    """Generate ``size`` vendor records, map them with the shipped mappings, split off changes."""
    started = time.perf_counter()
    dataset = generate_parties(int(size / PARTIES_PER_COMPANY) + 10, seed=SEED)
    rows = list(dataset.vendor_rows())[:size]
    generate_s = time.perf_counter() - started

    started = time.perf_counter()
    normalizer = Normalizer(load_mappings())
    resolve = SalesforceIdResolver(row.id for row in rows if row.system == "salesforce")
    records: list[PartyRecord] = []
    quarantined: Counter[str] = Counter()
    for row in rows:
        try:
            party = normalizer.map_record(row.system, row.object, row.id, row.payload)
        except RecordMappingError as exc:
            quarantined[f"{row.system}: {str(exc).split(':')[0]}"] += 1
            continue
        records.append(party_record(party, resolve=resolve))
    map_s = time.perf_counter() - started

    changed = min(INCREMENTAL, len(records) // 10)
    base, fresh = records[: -changed // 2], records[-changed // 2 :]
    truth = {r.ref: dataset.truth[r.ref] for r in records}
    return Prepared(base, fresh, truth, len(rows), quarantined, generate_s, map_s)


def peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quality_fields(customers: list[list[PartyRef]], truth: dict[PartyRef, str]) -> dict[str, float]:
    """Pairwise and B-cubed figures of a clustering of the base records."""
    q = evaluate(customers, truth)
    return {
        "precision": q.precision,
        "recall": q.recall,
        "f1": q.f1,
        "b3_precision": q.bcubed_precision,
        "b3_recall": q.bcubed_recall,
        "b3_f1": q.bcubed_f1,
    }


def run_ledgerlink(size: int) -> dict[str, Any]:
    """Full match of the base records, then about 1,000 new or changed ones incrementally."""
    data = prepare(size)
    base_truth = {r.ref: data.truth[r.ref] for r in data.base}
    edits = [
        replace(r, name=(r.name or "") + " Group")
        for r in data.base[: INCREMENTAL - len(data.fresh)]
    ]

    started = time.perf_counter()
    state = match_all(data.base)
    wall_s = time.perf_counter() - started
    quality = quality_fields([list(c.members) for c in state.customers()], base_truth)
    review = len(state.review_queue)
    pairs = state.compared_pairs

    started = time.perf_counter()
    match_new(state, [*data.fresh, *edits])
    incremental_s = time.perf_counter() - started
    return {
        "engine": "ledgerlink",
        "source_records": data.source_records,
        "records": len(data.base),
        "quarantined": dict(data.quarantined),
        "generate_s": data.generate_s,
        "map_s": data.map_s,
        "wall_s": wall_s,
        "candidate_pairs": pairs,
        **quality,
        "review": review,
        "incremental_records": len(data.fresh) + len(edits),
        "incremental_s": incremental_s,
        "peak_rss_mib": peak_rss_mib(),
    }


def splink_columns(records: list[PartyRecord]) -> dict[str, list[str | None]]:
    """Splink's input table: ledgerlink's normalized values, one column per field."""
    columns: dict[str, list[str | None]] = {
        key: []
        for key in (
            "unique_id",
            "name",
            "domain",
            "email",
            "phone",
            "postcode",
            "city",
            "country",
            "account_ref",
        )
    }
    for record in records:
        n = normalize_party(record)
        own = record.ref.id if record.ref.system == "salesforce" else None
        named = [x.id for x in record.xrefs if x.system == "salesforce"]
        values = {
            "unique_id": str(record.ref),
            "name": n.name,
            "domain": min(n.domains, default=None),
            "email": min(n.emails, default=None),
            "phone": min(n.phones, default=None),
            "postcode": n.postal_code,
            "city": n.city,
            "country": n.country,
            "account_ref": own or (named[0] if named else None),
        }
        for key, value in values.items():
            columns[key].append(value)
    return columns


def splink_settings() -> Any:
    """The Splink model: comparisons, blocking rules for prediction, and their reasons."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    # Country, city and postcode depend on each other; as one comparison they do not break
    # the independence assumption of the model (separately they double-count agreement).
    location = cl.CustomComparison(
        output_column_name="location",
        comparison_levels=[
            cll.And(cll.NullLevel("postcode"), cll.NullLevel("city"), cll.NullLevel("country")),
            cll.ExactMatchLevel("postcode"),
            cll.ExactMatchLevel("city"),
            cll.ExactMatchLevel("country"),
            cll.ElseLevel(),
        ],
    )
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            cl.NameComparison("name"),
            cl.ExactMatch("domain"),
            cl.ExactMatch("email"),
            cl.ExactMatch("phone"),
            cl.ExactMatch("account_ref"),
            location,
        ],
        blocking_rules_to_generate_predictions=[
            block_on("name"),
            "substr(l.name, 1, 6) = substr(r.name, 1, 6) and l.country = r.country",
            block_on("domain"),
            block_on("email"),
            block_on("phone"),
            block_on("account_ref"),
            block_on("postcode", "city"),
        ],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def run_splink(size: int) -> dict[str, Any]:
    """Train Splink as its documentation recommends, predict, and cluster at each threshold."""
    import logging

    from splink import DuckDBAPI, Linker, block_on

    data = prepare(size)
    base_truth = {r.ref: data.truth[r.ref] for r in data.base}
    started = time.perf_counter()
    columns = splink_columns(data.base)
    normalize_s = time.perf_counter() - started

    started = time.perf_counter()
    db_api = DuckDBAPI()
    table = db_api.register(columns)
    linker = Linker(table, splink_settings(), log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("name", "country"), block_on("email")], recall=0.6
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=SEED)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("name"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
    predictions = linker.inference.predict(threshold_match_probability=REVIEW_FLOOR)
    train_predict_s = time.perf_counter() - started
    relation = predictions.as_duckdbpyrelation().select("match_probability")
    probabilities = [probability for (probability,) in relation.fetchall()]

    by_threshold: dict[float, dict[str, Any]] = {}
    for threshold in SPLINK_SWEEP:
        started = time.perf_counter()
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=threshold
        )
        groups: dict[Any, list[PartyRef]] = {}
        relation = clusters.as_duckdbpyrelation().select("cluster_id, unique_id")
        for cluster_id, unique_id in relation.fetchall():
            groups.setdefault(cluster_id, []).append(PartyRef.parse(unique_id))
        cluster_s = time.perf_counter() - started
        by_threshold[threshold] = {
            **quality_fields(list(groups.values()), base_truth),
            "cluster_s": cluster_s,
            "review": sum(1 for p in probabilities if REVIEW_FLOOR <= p < threshold),
        }
    return {
        "engine": "splink",
        "source_records": data.source_records,
        "records": len(data.base),
        "quarantined": dict(data.quarantined),
        "generate_s": data.generate_s,
        "map_s": data.map_s,
        "normalize_s": normalize_s,
        "train_predict_s": train_predict_s,
        "predicted_pairs": len(probabilities),
        "by_threshold": {str(t): v for t, v in by_threshold.items()},
        "peak_rss_mib": peak_rss_mib(),
    }


def run_worker(engine: str, size: int) -> dict[str, Any]:
    """Run one engine in a fresh process so that its peak RSS is its own."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", engine, str(size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        msg = f"{engine} at {size} records failed with status {done.returncode}"
        raise SystemExit(msg)
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith(RESULT_PREFIX))
    result: dict[str, Any] = json.loads(line.removeprefix(RESULT_PREFIX))
    return result


HEADER = (
    f"{'system':<17} {'records':>8} {'wall s':>7} {'RSS MiB':>7} {'P':>6} {'R':>6} {'F1':>6} "
    f"{'B3 P':>6} {'B3 R':>6} {'B3 F1':>6} {'review':>7} {'rev %':>5} {'1k inc s':>8}"
)


def row(system: str, records: int, wall: float, rss: float, q: dict[str, Any], inc: str) -> str:
    """One line of the table."""
    return (
        f"{system:<17} {records:>8,} {wall:>7.1f} {rss:>7.0f} {q['precision']:>6.4f} "
        f"{q['recall']:>6.4f} {q['f1']:>6.4f} {q['b3_precision']:>6.4f} {q['b3_recall']:>6.4f} "
        f"{q['b3_f1']:>6.4f} {q['review']:>7,} {100 * q['review'] / records:>5.2f} {inc:>8}"
    )


def report_ledgerlink(r: dict[str, Any]) -> None:
    """Print ledgerlink's line and what preparing its input cost."""
    print(
        row(
            "ledgerlink",
            r["records"],
            r["wall_s"],
            r["peak_rss_mib"],
            r,
            f"{r['incremental_s']:.2f}",
        ),
        flush=True,
    )


def report_splink(r: dict[str, Any]) -> None:
    """Print Splink's line at 0.95 and at the best threshold of the sweep."""
    sweep = {float(t): q for t, q in r["by_threshold"].items()}
    wall = r["train_predict_s"]
    at_default = sweep[SPLINK_DEFAULT_THRESHOLD]
    print(
        row(
            f"splink @{SPLINK_DEFAULT_THRESHOLD}",
            r["records"],
            wall + at_default["cluster_s"],
            r["peak_rss_mib"],
            at_default,
            "-",
        ),
        flush=True,
    )
    best = max(sweep, key=lambda t: sweep[t]["b3_f1"])
    print(
        row(
            f"splink best@{best}",
            r["records"],
            wall + sweep[best]["cluster_s"],
            r["peak_rss_mib"],
            sweep[best],
            "-",
        ),
        flush=True,
    )


def main(argv: list[str]) -> None:
    """Parse the command line and run the engines at each size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, help="source records (default 10000 100000)")
    parser.add_argument("--no-splink", action="store_true", help="run ledgerlink only")
    parser.add_argument(
        "--splink-max",
        type=int,
        default=100_000,
        metavar="N",
        help="run Splink only up to N source records (default 100000)",
    )
    parser.add_argument("--worker", choices=("ledgerlink", "splink"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(size < 100 for size in args.sizes):
        parser.error("each size must be at least 100 source records")
    if args.worker:
        run = run_ledgerlink if args.worker == "ledgerlink" else run_splink
        for size in args.sizes:
            print(RESULT_PREFIX + json.dumps(run(size)), flush=True)
        return

    sizes = args.sizes or [10_000, 100_000]
    print(HEADER, flush=True)
    details: list[str] = []
    for size in sizes:
        ours = run_worker("ledgerlink", size)
        report_ledgerlink(ours)
        details.append(
            f"{size:,} source records: generated in {ours['generate_s']:.1f} s, mapped in "
            f"{ours['map_s']:.1f} s, {ours['records']:,} matched in full, "
            f"{sum(ours['quarantined'].values()):,} refused by the mappings "
            f"{ours['quarantined'] or ''}; ledgerlink compared {ours['candidate_pairs']:,} "
            f"pairs, incremental run of {ours['incremental_records']:,} records"
        )
        if not args.no_splink and size <= args.splink_max:
            theirs = run_worker("splink", size)
            report_splink(theirs)
            sweep = ", ".join(
                f"{t}: B3 F1 {q['b3_f1']:.4f}" for t, q in theirs["by_threshold"].items()
            )
            details.append(
                f"  splink: normalized input in {theirs['normalize_s']:.1f} s, trained and "
                f"predicted in {theirs['train_predict_s']:.1f} s, "
                f"{theirs['predicted_pairs']:,} pairs >= {REVIEW_FLOOR}; sweep {sweep}"
            )
    print()
    print("\n".join(details))


if __name__ == "__main__":
    main(sys.argv[1:])
