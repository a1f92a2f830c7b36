"""Quote-to-cash documents in QuickBooks' JSON, built from ledgerlink money.

The planner turns Stripe invoices, charges, refunds, fees and payouts into these documents;
the connector writes them. Amounts come in as :class:`~ledgerlink.domain.money.Money`
(integer minor units + ISO currency) and leave as exact :class:`~decimal.Decimal` values,
which :mod:`ledgerlink_quickbooks._json` sends as JSON numbers without rounding.

Where each amount posts is decided by an :class:`AccountsMap` (the plain-data form of
``mappings/accounts.yaml``): charges land in a clearing account (Stripe's balance), fees
are moved from clearing to an expense account with a journal entry, and payouts are deposits
from clearing into the bank account.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ledgerlink.domain.money import Money

__all__ = [
    "AccountsMap",
    "InvoiceLine",
    "credit_application",
    "credit_memo",
    "fee_journal_entry",
    "invoice",
    "payment",
    "payout_deposit",
    "refund_receipt",
    "zeroed",
]

JSON = dict[str, Any]


@dataclass(frozen=True)
class AccountsMap:
    """QuickBooks account ids the postings use.

    Attributes:
        clearing: where charges land and fees and payouts leave (the Stripe balance).
        bank: where payouts arrive.
        fees_expense: expense account for processor fees.
        discounts: account for discount lines, None for the company default.
    """

    clearing: str
    bank: str
    fees_expense: str
    discounts: str | None = None


@dataclass(frozen=True)
class InvoiceLine:
    """One sales line: ``quantity`` of ``item_id`` at ``unit_price`` each.

    ``unit_price`` times ``quantity`` must be exact in the currency (it is in minor units).
    """

    item_id: str
    quantity: int
    unit_price: Money
    description: str = ""
    tax_code: str = "NON"


def _ref(value: str) -> JSON:
    return {"value": value}


def _amount(money: Money) -> Decimal:
    return money.to_decimal()


def _currency_fields(currency: str, home_currency: str, rate: Decimal | None) -> JSON:
    fields: JSON = {"CurrencyRef": _ref(currency)}
    if currency != home_currency:
        if rate is None:
            msg = f"an exchange rate to {home_currency} is needed for a {currency} document"
            raise ValueError(msg)
        fields["ExchangeRate"] = rate
    return fields


def _sales_lines(lines: Sequence[InvoiceLine], currency: str) -> tuple[list[JSON], Money]:
    out: list[JSON] = []
    subtotal = Money(0, currency)
    for number, line in enumerate(lines, start=1):
        if line.unit_price.currency != currency:
            msg = f"line {number} is in {line.unit_price.currency}, the document in {currency}"
            raise ValueError(msg)
        amount = line.unit_price * line.quantity
        subtotal += amount
        entry: JSON = {
            "LineNum": number,
            "Amount": _amount(amount),
            "DetailType": "SalesItemLineDetail",
            "SalesItemLineDetail": {
                "ItemRef": _ref(line.item_id),
                "Qty": line.quantity,
                "UnitPrice": _amount(line.unit_price),
                "TaxCodeRef": _ref(line.tax_code),
            },
        }
        if line.description:
            entry["Description"] = line.description
        out.append(entry)
    return out, subtotal


def invoice(
    *,
    customer_id: str,
    lines: Sequence[InvoiceLine],
    currency: str,
    txn_date: dt.date,
    due_date: dt.date | None = None,
    doc_number: str | None = None,
    discount: Money | None = None,
    tax: Money | None = None,
    accounts: AccountsMap | None = None,
    home_currency: str = "USD",
    exchange_rate: Decimal | None = None,
    memo: str | None = None,
) -> JSON:
    """Build an Invoice for ``customer_id`` with item lines, discount and tax.

    Args:
        customer_id: the QuickBooks customer id.
        lines: sales lines (at least one).
        currency: document currency (ISO code).
        txn_date: invoice date.
        due_date: due date, None for the customer's terms.
        doc_number: invoice number (the Stripe invoice number, for people).
        discount: a fixed discount in ``currency``.
        tax: total tax in ``currency`` (QuickBooks' automated tax is off for the hub).
        accounts: accounts map, for the discount account.
        home_currency: the company's home currency.
        exchange_rate: home units per document unit, required when currencies differ.
        memo: private note.

    Returns:
        The Invoice JSON.

    Raises:
        ValueError: no lines, mixed currencies, or a foreign currency without a rate.
    """
    if not lines:
        msg = "an invoice needs at least one line"
        raise ValueError(msg)
    body_lines, _subtotal = _sales_lines(lines, currency)
    if discount is not None and not discount.is_zero:
        detail: JSON = {"PercentBased": False}
        if accounts is not None and accounts.discounts:
            detail["DiscountAccountRef"] = _ref(accounts.discounts)
        body_lines.append(
            {
                "Amount": _amount(discount),
                "DetailType": "DiscountLineDetail",
                "DiscountLineDetail": detail,
            }
        )
    body: JSON = {
        "CustomerRef": _ref(customer_id),
        "TxnDate": txn_date.isoformat(),
        "Line": body_lines,
        **_currency_fields(currency, home_currency, exchange_rate),
    }
    if tax is not None and not tax.is_zero:
        body["TxnTaxDetail"] = {"TotalTax": _amount(tax)}
    if due_date is not None:
        body["DueDate"] = due_date.isoformat()
    if doc_number:
        body["DocNumber"] = doc_number[:21]
    if memo:
        body["PrivateNote"] = memo[:4000]
    return body


def payment(
    *,
    customer_id: str,
    invoice_id: str | None,
    amount: Money,
    txn_date: dt.date,
    accounts: AccountsMap,
    home_currency: str = "USD",
    exchange_rate: Decimal | None = None,
    reference: str | None = None,
) -> JSON:
    """Build a Payment of ``amount`` applied to ``invoice_id`` through ``LinkedTxn``.

    The money lands in the clearing account (the processor's balance), not the bank. Without
    an invoice (``invoice_id`` None: a one-off charge) the payment has no lines, so QuickBooks
    keeps all of it as unapplied credit on the customer's account (``UnappliedAmt``).

    Raises:
        ValueError: a foreign currency without a rate, or a non-positive amount.
    """
    if not amount.is_positive:
        msg = "a payment amount must be positive"
        raise ValueError(msg)
    body: JSON = {
        "CustomerRef": _ref(customer_id),
        "TotalAmt": _amount(amount),
        "TxnDate": txn_date.isoformat(),
        "DepositToAccountRef": _ref(accounts.clearing),
        **_currency_fields(amount.currency, home_currency, exchange_rate),
    }
    if invoice_id is not None:
        body["Line"] = [
            {
                "Amount": _amount(amount),
                "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}],
            }
        ]
    if reference:
        body["PaymentRefNum"] = reference[:21]
    return body


def credit_memo(
    *,
    customer_id: str,
    lines: Sequence[InvoiceLine],
    currency: str,
    txn_date: dt.date,
    home_currency: str = "USD",
    exchange_rate: Decimal | None = None,
    doc_number: str | None = None,
    discount: Money | None = None,
    tax: Money | None = None,
    memo: str | None = None,
) -> JSON:
    """Build a CreditMemo (a Stripe credit note) reducing what the customer owes.

    It posts like an invoice in reverse: the items' income accounts are debited and the
    customer's receivable credited; ``discount`` and ``tax`` reduce and add to it as on the
    invoice the credit note corrects.

    Raises:
        ValueError: no lines, mixed currencies, or a foreign currency without a rate.
    """
    if not lines:
        msg = "a credit memo needs at least one line"
        raise ValueError(msg)
    body_lines, _ = _sales_lines(lines, currency)
    if discount is not None and not discount.is_zero:
        body_lines.append(
            {
                "Amount": _amount(discount),
                "DetailType": "DiscountLineDetail",
                "DiscountLineDetail": {"PercentBased": False},
            }
        )
    body: JSON = {
        "CustomerRef": _ref(customer_id),
        "TxnDate": txn_date.isoformat(),
        "Line": body_lines,
        **_currency_fields(currency, home_currency, exchange_rate),
    }
    if tax is not None and not tax.is_zero:
        body["TxnTaxDetail"] = {"TotalTax": _amount(tax)}
    if doc_number:
        body["DocNumber"] = doc_number[:21]
    if memo:
        body["PrivateNote"] = memo[:4000]
    return body


def credit_application(
    *,
    customer_id: str,
    invoice_id: str,
    credit_memo_id: str,
    amount: Money,
    txn_date: dt.date,
    home_currency: str = "USD",
    exchange_rate: Decimal | None = None,
) -> JSON:
    """Build the zero Payment that applies ``amount`` of a CreditMemo to an Invoice.

    QuickBooks applies a credit to an invoice through a Payment whose ``TotalAmt`` is 0 and
    whose lines link the invoice and the credit memo for the same amount: no money moves, the
    invoice's ``Balance`` and the memo's ``RemainingCredit`` both go down by ``amount``.

    Raises:
        ValueError: a non-positive amount or a foreign currency without a rate.
    """
    if not amount.is_positive:
        msg = "an applied credit must be positive"
        raise ValueError(msg)
    applied = _amount(amount)
    return {
        "CustomerRef": _ref(customer_id),
        "TotalAmt": Decimal(0),
        "TxnDate": txn_date.isoformat(),
        "Line": [
            {"Amount": applied, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]},
            {"Amount": applied, "LinkedTxn": [{"TxnId": credit_memo_id, "TxnType": "CreditMemo"}]},
        ],
        **_currency_fields(amount.currency, home_currency, exchange_rate),
    }


def zeroed(document: JSON, note: str) -> JSON:
    """The sparse update that empties a sales document the API cannot void (a CreditMemo).

    QuickBooks' own void keeps a document and its Id but zeroes its amounts and quantities and
    puts "Voided" before its ``PrivateNote``; the API offers that operation for invoices but
    not for credit memos, so the hub sends the same change as an update: every line at 0,
    no tax, and the note.
    """
    lines: list[JSON] = []
    for line in document.get("Line") or []:
        zero = {**line, "Amount": Decimal(0)}
        detail = line.get("SalesItemLineDetail")
        if isinstance(detail, dict):
            zero["SalesItemLineDetail"] = {**detail, "Qty": 0, "UnitPrice": Decimal(0)}
        lines.append(zero)
    body: JSON = {"Line": lines, "PrivateNote": f"Voided {note}"[:4000]}
    if document.get("TxnTaxDetail"):
        body["TxnTaxDetail"] = {"TotalTax": Decimal(0)}
    return body


def refund_receipt(
    *,
    customer_id: str,
    lines: Sequence[InvoiceLine],
    currency: str,
    txn_date: dt.date,
    accounts: AccountsMap,
    home_currency: str = "USD",
    exchange_rate: Decimal | None = None,
) -> JSON:
    """Build a RefundReceipt paid out of the clearing account (a Stripe refund).

    Raises:
        ValueError: no lines, mixed currencies, or a foreign currency without a rate.
    """
    if not lines:
        msg = "a refund needs at least one line"
        raise ValueError(msg)
    body_lines, _ = _sales_lines(lines, currency)
    return {
        "CustomerRef": _ref(customer_id),
        "TxnDate": txn_date.isoformat(),
        "Line": body_lines,
        "DepositToAccountRef": _ref(accounts.clearing),
        **_currency_fields(currency, home_currency, exchange_rate),
    }


def fee_journal_entry(
    *,
    fee: Money,
    txn_date: dt.date,
    accounts: AccountsMap,
    description: str = "Stripe fees",
    home_currency: str = "USD",
    exchange_rate: Decimal | None = None,
) -> JSON:
    """Build a JournalEntry moving processor fees from clearing to the fees expense account.

    Raises:
        ValueError: a non-positive fee or a foreign currency without a rate.
    """
    if not fee.is_positive:
        msg = "a fee must be positive"
        raise ValueError(msg)
    amount = _amount(fee)

    def line(posting: str, account: str) -> JSON:
        return {
            "Amount": amount,
            "Description": description,
            "DetailType": "JournalEntryLineDetail",
            "JournalEntryLineDetail": {"PostingType": posting, "AccountRef": _ref(account)},
        }

    return {
        "TxnDate": txn_date.isoformat(),
        "Line": [line("Debit", accounts.fees_expense), line("Credit", accounts.clearing)],
        **_currency_fields(fee.currency, home_currency, exchange_rate),
    }


def payout_deposit(
    *,
    amount: Money,
    txn_date: dt.date,
    accounts: AccountsMap,
    description: str = "Stripe payout",
    home_currency: str = "USD",
    exchange_rate: Decimal | None = None,
) -> JSON:
    """Build a Deposit of a payout into the bank account, from the clearing account.

    Raises:
        ValueError: a non-positive amount or a foreign currency without a rate.
    """
    if not amount.is_positive:
        msg = "a payout amount must be positive"
        raise ValueError(msg)
    return {
        "TxnDate": txn_date.isoformat(),
        "DepositToAccountRef": _ref(accounts.bank),
        "Line": [
            {
                "Amount": _amount(amount),
                "Description": description,
                "DetailType": "DepositLineDetail",
                "DepositLineDetail": {"AccountRef": _ref(accounts.clearing)},
            }
        ],
        **_currency_fields(amount.currency, home_currency, exchange_rate),
    }
