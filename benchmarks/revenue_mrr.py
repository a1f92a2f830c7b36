"""Benchmark: MRR and movements for 100,000 subscriptions over 24 months.

Run on demand: ``.venv/bin/python benchmarks/revenue_mrr.py [subscriptions]``. Builds
synthetic histories (monthly, quarterly and annual plans; a quarter of them upgraded, one in
ten cancelled, some trials and past-due spells), then times ``compute_movements`` over 24
months and one month of ``measure_mrr``, and prints wall time and peak RSS.
"""

from __future__ import annotations

import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta

from ledgerlink.domain.entities import (
    Interval,
    SourceRef,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from ledgerlink.domain.money import Money
from ledgerlink.revenue import Month, compute_movements, histories, measure_mrr, snapshot

START = datetime(2023, 1, 1, tzinfo=UTC)
PLANS = [
    (2900, Interval.MONTH, 1),
    (9900, Interval.MONTH, 1),
    (27000, Interval.MONTH, 3),
    (99000, Interval.YEAR, 1),
    (250000, Interval.YEAR, 1),
]


def build(count: int, seed: int = 7) -> list:
    rng = random.Random(seed)
    snaps = []
    for n in range(count):
        amount, interval, interval_count = rng.choice(PLANS)
        started = START + timedelta(days=rng.randrange(0, 600))
        ref = SourceRef(system="stripe", object="subscription", id=f"sub_{n}")
        price = SourceRef(system="stripe", object="price", id=f"price_{amount}_{interval}")
        currency = "EUR" if n % 3 else "USD"

        def sub(
            status: str,
            qty: int,
            ref: SourceRef = ref,
            currency: str = currency,
            started: datetime = started,
            price: SourceRef = price,
            amount: int = amount,
            interval: Interval = interval,
            interval_count: int = interval_count,
            **extra: object,
        ) -> Subscription:
            item = SubscriptionItem(
                price=price,
                quantity=qty,
                unit_price=Money(amount, currency),
                interval=interval,
                interval_count=interval_count,
            )
            return Subscription(
                source=ref,
                status=SubscriptionStatus(status),
                currency=currency,
                started_at=started,
                current_period_start=started,
                items=(item,),
                **extra,
            )

        customer = f"cus_{n % (count // 2 or 1)}"
        snaps.append(snapshot(sub("active", 1), customer=customer, effective_at=started))
        roll = rng.random()
        later = started + timedelta(days=rng.randrange(20, 300))
        if roll < 0.25:
            snaps.append(
                snapshot(sub("active", rng.randrange(2, 6)), customer=customer, effective_at=later)
            )
        elif roll < 0.35:
            snaps.append(
                snapshot(sub("canceled", 1, ended_at=later), customer=customer, effective_at=later)
            )
        elif roll < 0.40:
            snaps.append(snapshot(sub("past_due", 1), customer=customer, effective_at=later))
    return snaps


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    t0 = time.perf_counter()
    subs = histories(build(count))
    t1 = time.perf_counter()
    report = compute_movements(subs, Month(2023, 1), Month(2024, 12))
    t2 = time.perf_counter()
    snap_totals = measure_mrr(subs, Month(2024, 12)).totals()
    t3 = time.perf_counter()
    assert all(total.reconciles() for total in report.totals)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"subscriptions: {count:,} ({len(subs):,} histories)")
    print(f"build inputs:            {t1 - t0:7.2f} s")
    print(f"movements (24 months):   {t2 - t1:7.2f} s  rows={len(report.rows):,}")
    print(
        f"measure_mrr (1 month):   {t3 - t2:7.2f} s  totals={ {k: str(v) for k, v in snap_totals.items()} }"
    )
    print(f"peak RSS:                {peak_mb:7.0f} MB")


if __name__ == "__main__":
    main()
