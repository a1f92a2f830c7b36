"""Quote-to-cash posting: exact amounts, and a balanced ledger after a month of activity."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from ledgerlink_quickbooks import posting
from ledgerlink_quickbooks._json import dumps

from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.domain.money import Money

ACCOUNTS = posting.AccountsMap(clearing="3", bank="2", fees_expense="4", discounts="9")
DAY = dt.date(2026, 3, 1)


def test_invoice_amounts_are_exact_decimals_from_minor_units():
    """Minor units become exact Decimals: 3 x 19.99 EUR is 59.97, never a float sum."""
    body = posting.invoice(
        customer_id="1",
        lines=[posting.InvoiceLine("3", 3, Money(1999, "EUR"))],
        currency="EUR",
        txn_date=DAY,
        discount=Money(500, "EUR"),
        tax=Money(1044, "EUR"),
        accounts=ACCOUNTS,
        exchange_rate=Decimal("1.0825"),
    )
    assert body["Line"][0]["Amount"] == Decimal("59.97")
    assert body["Line"][0]["SalesItemLineDetail"]["UnitPrice"] == Decimal("19.99")
    assert body["Line"][1]["DetailType"] == "DiscountLineDetail"
    assert body["Line"][1]["DiscountLineDetail"]["DiscountAccountRef"] == {"value": "9"}
    assert body["CurrencyRef"] == {"value": "EUR"}
    assert body["ExchangeRate"] == Decimal("1.0825")
    assert b'"Amount":59.97' in dumps(body)


def test_zero_decimal_currency_and_missing_rate():
    """JPY has no minor unit, and a foreign document without a rate is refused."""
    line = posting.InvoiceLine("1", 1, Money(5000, "JPY"))
    body = posting.invoice(
        customer_id="1",
        lines=[line],
        currency="JPY",
        txn_date=DAY,
        exchange_rate=Decimal("0.0067"),
    )
    assert body["Line"][0]["Amount"] == Decimal("5000")
    with pytest.raises(ValueError, match="exchange rate"):
        posting.invoice(customer_id="1", lines=[line], currency="JPY", txn_date=DAY)


def test_json_refuses_an_amount_it_cannot_send_exactly():
    """An amount with more digits than a JSON number keeps exactly is refused, not rounded."""
    with pytest.raises(ValueError, match="exactly"):
        dumps({"Amount": Decimal("12345678901234567.89")})


def _write_one(conn, key, entity, payload):
    [result] = conn.write([WriteOp(key, entity, WriteAction.CREATE, payload)])
    assert result.ok, result.error
    return result.remote_id


def test_month_of_activity_leaves_a_balanced_ledger_and_open_receivables(connector, sandbox):
    """After invoices, payments, refunds, fees and payouts the trial balance sums to zero
    and each customer's receivable equals what is still open."""
    seeded_ar = sandbox.receivable_by_customer()
    customers = [
        _write_one(
            connector,
            f"c-{n}",
            "Customer",
            {"DisplayName": f"Ledger Co {n}", "CurrencyRef": {"value": "EUR" if n == 2 else "USD"}},
        )
        for n in range(3)
    ]
    open_home: dict[str, Decimal] = {c: Decimal(0) for c in customers}
    clearing = Decimal(0)
    invoices = []
    for n, customer in enumerate(customers):
        eur = n == 2
        currency, rate = ("EUR", Decimal("1.1")) if eur else ("USD", None)
        lines = [
            posting.InvoiceLine("1", 1, Money(200_000, currency)),
            posting.InvoiceLine("3", 4, Money(1_500, currency)),
        ]
        body = posting.invoice(
            customer_id=customer,
            lines=lines,
            currency=currency,
            txn_date=DAY,
            discount=Money(1_000, currency),
            tax=Money(500 if n == 1 else 0, currency),
            accounts=ACCOUNTS,
            exchange_rate=rate,
            doc_number=f"in_{n}",
        )
        invoice_id = _write_one(connector, f"inv-{n}", "Invoice", body)
        total = Decimal("2000") + Decimal("60") - Decimal("10") + (5 if n == 1 else 0)
        open_home[customer] += (total * (rate or 1)).quantize(Decimal("0.01"))
        invoices.append((customer, invoice_id, currency, rate, total))
    for n, (customer, invoice_id, currency, rate, total) in enumerate(invoices[:2]):
        paid = total if n == 0 else Decimal("500")
        body = posting.payment(
            customer_id=customer,
            invoice_id=invoice_id,
            amount=Money.from_decimal(paid, currency),
            txn_date=DAY,
            accounts=ACCOUNTS,
            exchange_rate=rate,
        )
        _write_one(connector, f"pay-{n}", "Payment", body)
        open_home[customer] -= paid
        clearing += paid
    memo = posting.credit_memo(
        customer_id=customers[1],
        lines=[posting.InvoiceLine("3", 2, Money(1_500, "USD"))],
        currency="USD",
        txn_date=DAY,
    )
    _write_one(connector, "cm-1", "CreditMemo", memo)
    open_home[customers[1]] -= Decimal("30")
    refund = posting.refund_receipt(
        customer_id=customers[0],
        lines=[posting.InvoiceLine("3", 1, Money(1_500, "USD"))],
        currency="USD",
        txn_date=DAY,
        accounts=ACCOUNTS,
    )
    _write_one(connector, "rf-1", "RefundReceipt", refund)
    clearing -= Decimal("15")
    fee = posting.fee_journal_entry(fee=Money(6_245, "USD"), txn_date=DAY, accounts=ACCOUNTS)
    _write_one(connector, "fee-1", "JournalEntry", fee)
    clearing -= Decimal("62.45")
    payout = posting.payout_deposit(
        amount=Money.from_decimal(clearing, "USD"), txn_date=DAY, accounts=ACCOUNTS
    )
    _write_one(connector, "po-1", "Deposit", payout)

    balances = sandbox.trial_balance()
    assert sum(balances.values()) == 0
    assert balances.get("3", Decimal(0)) == 0
    assert balances["2"] == Decimal("2050") + Decimal("500") - Decimal("15") - Decimal("62.45")
    assert balances["4"] == Decimal("62.45")
    assert balances["8"] == Decimal("-5")
    ar = sandbox.receivable_by_customer()
    assert {c: ar.get(c, Decimal(0)) for c in customers} == open_home
    assert {k: v for k, v in ar.items() if k not in customers} == seeded_ar
    report = connector.get_json("reports/TrialBalance")
    total_row = report["Rows"]["Row"][-1]["Summary"]["ColData"]
    assert total_row[1]["value"] == total_row[2]["value"]
