"""Benchmark of the matching engine: time, candidate pairs and quality at growing sizes.

Run on demand (never in tests):

    .venv/bin/python benchmarks/matching_scale.py            # 10k and 100k parties
    .venv/bin/python benchmarks/matching_scale.py 10000      # one size

For each size it generates a deterministic three-system dataset with known truth
(``ledgerlink.matching.synthetic``), runs a full match (normalize, block, fit the model by EM,
score, cluster), then matches 1,000 new or changed parties incrementally against the result.
It prints the candidate pairs compared (which should grow near-linearly), wall times, peak
RSS, pairwise precision/recall/F1 and the review-queue size.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import replace

from ledgerlink.matching import match_all, match_new
from ledgerlink.matching.synthetic import evaluate, generate_parties

PARTIES_PER_COMPANY = 2.25


def run(parties: int) -> dict[str, float]:
    companies = int(parties / PARTIES_PER_COMPANY)
    started = time.perf_counter()
    dataset = generate_parties(companies, seed=2026)
    generated = time.perf_counter() - started
    records = list(dataset.records)
    changed_count = min(1000, len(records) // 10)
    base, fresh = records[: -changed_count // 2], records[-changed_count // 2 :]
    edits = [
        replace(r, name=(r.name or "") + " Group", updated_at=r.updated_at)
        for r in base[: changed_count - len(fresh)]
    ]

    started = time.perf_counter()
    state = match_all(base)
    full_seconds = time.perf_counter() - started
    full_pairs = state.compared_pairs
    quality = evaluate(
        [c.members for c in state.customers()], {r.ref: dataset.truth[r.ref] for r in base}
    )
    review = len(state.review_queue)

    started = time.perf_counter()
    match_new(state, [*fresh, *edits])
    incremental_seconds = time.perf_counter() - started
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "parties": len(base),
        "generate_s": generated,
        "full_s": full_seconds,
        "candidate_pairs": full_pairs,
        "pairs_per_party": full_pairs / len(base),
        "precision": quality.precision,
        "recall": quality.recall,
        "f1": quality.f1,
        "review": review,
        "review_pct": 100 * review / len(base),
        "customers": len(state.clusters),
        "incremental_records": len(fresh) + len(edits),
        "incremental_s": incremental_seconds,
        "incremental_pairs": state.compared_pairs,
        "peak_rss_mib": rss_mib,
        "em_iterations": state.model.iterations,
    }


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [10_000, 100_000]
    header = (
        f"{'parties':>8} {'full s':>7} {'pairs':>9} {'pairs/p':>7} {'P':>6} {'R':>6} "
        f"{'F1':>6} {'review':>7} {'rev %':>5} {'inc n':>5} {'inc s':>6} {'inc pairs':>9} "
        f"{'RSS MiB':>7}"
    )
    print(header)
    for size in sizes:
        r = run(size)
        print(
            f"{r['parties']:>8.0f} {r['full_s']:>7.1f} {r['candidate_pairs']:>9.0f} "
            f"{r['pairs_per_party']:>7.2f} {r['precision']:>6.4f} {r['recall']:>6.4f} "
            f"{r['f1']:>6.4f} {r['review']:>7.0f} {r['review_pct']:>5.2f} "
            f"{r['incremental_records']:>5.0f} {r['incremental_s']:>6.2f} "
            f"{r['incremental_pairs']:>9.0f} {r['peak_rss_mib']:>7.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
