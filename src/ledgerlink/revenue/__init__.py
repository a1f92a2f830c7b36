"""Revenue metrics: MRR, ARR, ACV, MRR movements, and bookings/billings/cash/revenue.

Works on canonical entities only (see :mod:`ledgerlink.domain.entities`), with every choice
that tools disagree on spelled out in :class:`RevenuePolicy`:

- :mod:`ledgerlink.revenue.mrr`: subscriptions normalised to months, exactly; ``explain``;
  ACV from quotes; metered usage and one-off charges apart.
- :mod:`ledgerlink.revenue.history`: subscription histories rebuilt from Stripe invoices, one
  snapshot per billed period and per mid-period change.
- :mod:`ledgerlink.revenue.movements`: new, expansion, contraction, churn, reactivation that
  reconcile opening to closing MRR.
- :mod:`ledgerlink.revenue.recognition`: straight-line recognition by day, side by side with
  bookings, billings and cash.
- :mod:`ledgerlink.revenue.report`: tables and their table/CSV/JSON renderers for the CLI.
"""

from __future__ import annotations

from ledgerlink.revenue.history import rebuild_histories, rebuild_history
from ledgerlink.revenue.movements import (
    Movement,
    MovementKind,
    MovementReport,
    MovementTotals,
    compute_movements,
)
from ledgerlink.revenue.mrr import (
    ContractValue,
    CustomerResolver,
    Discount,
    DiscountDuration,
    Exclusion,
    Month,
    MrrExplanation,
    MrrLine,
    MrrSnapshot,
    NonRecurring,
    SubscriptionHistory,
    SubscriptionSnapshot,
    arr,
    contract_value,
    customer_mrr,
    default_customer,
    explain,
    histories,
    measure_mrr,
    month_range,
    round_fraction,
    snapshot,
    usage_and_one_off,
)
from ledgerlink.revenue.policy import (
    CancelAtPeriodEnd,
    DiscountTreatment,
    MissingRateError,
    PastDueTreatment,
    RateTable,
    RevenueError,
    RevenuePolicy,
)
from ledgerlink.revenue.recognition import (
    Dispute,
    RevenueRow,
    invoice_line_amounts,
    recognise,
    revenue_by_month,
)
from ledgerlink.revenue.report import (
    Cell,
    ReportFormat,
    Table,
    explain_table,
    movements_table,
    mrr_table,
    neutralise_cell,
    render,
    revenue_table,
)

__all__ = [
    "CancelAtPeriodEnd",
    "Cell",
    "ContractValue",
    "CustomerResolver",
    "Discount",
    "DiscountDuration",
    "DiscountTreatment",
    "Dispute",
    "Exclusion",
    "MissingRateError",
    "Month",
    "Movement",
    "MovementKind",
    "MovementReport",
    "MovementTotals",
    "MrrExplanation",
    "MrrLine",
    "MrrSnapshot",
    "NonRecurring",
    "PastDueTreatment",
    "RateTable",
    "ReportFormat",
    "RevenueError",
    "RevenuePolicy",
    "RevenueRow",
    "SubscriptionHistory",
    "SubscriptionSnapshot",
    "Table",
    "arr",
    "compute_movements",
    "contract_value",
    "customer_mrr",
    "default_customer",
    "explain",
    "explain_table",
    "histories",
    "invoice_line_amounts",
    "measure_mrr",
    "month_range",
    "movements_table",
    "mrr_table",
    "neutralise_cell",
    "rebuild_histories",
    "rebuild_history",
    "recognise",
    "render",
    "revenue_by_month",
    "revenue_table",
    "round_fraction",
    "snapshot",
    "usage_and_one_off",
]
