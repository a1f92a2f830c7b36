"""Seeded, lazily generated Stripe objects for the sandbox.

Nothing is materialised up front: object number ``i`` of a kind is computed from the seed and
``i`` when asked for, so a sandbox of a million customers starts at once and holds in memory
only what clients created or changed. Ids carry the real prefixes (``cus_``, ``in_``, ...) and
encode their index, so ``starting_after`` finds its place without a scan.

Per ``size`` customers the seed holds: one subscription per customer, two invoices (each with a
payment intent and a charge), a balance transaction per successful charge, a refund per ten
customers, a credit note per twenty, a dispute per fifty and a payout per twenty-five, over a
small catalogue of products and prices in several currencies (JPY is zero-decimal).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CURRENCIES",
    "ZERO_DECIMAL",
    "SeedCatalog",
    "SeedKind",
]

JSON = dict[str, Any]

CURRENCIES = ("usd", "eur", "gbp", "jpy", "cad")
ZERO_DECIMAL = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX_WIDTH = 5  # 62**5 > 900 million objects per kind
_DAY = 86_400
_PRODUCTS = ("Starter", "Pro", "Business", "Enterprise", "Extra seat", "API overage")
# Unit amounts in USD cents; other currencies scale from it (JPY has no minor unit).
_PRODUCT_USD = (1_900, 4_900, 19_900, 99_900, 1_200, 5)
_FX = {"usd": 1.0, "eur": 0.92, "gbp": 0.79, "jpy": 1.5, "cad": 1.36}
_FIRST = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Müller",
    "Société Générale de",
    "Nakatomi",
    "Østfold",
    "Ñandú",
)
_SECOND = ("Corp", "Inc.", "GmbH", "Ltd", "S.A.", "K.K.", "LLC", "", "Holdings", "Labs")
_COUNTRIES = ("US", "DE", "GB", "JP", "CA", "FR", "ES")


def _b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def _unb62(text: str) -> int:
    n = 0
    for ch in text:
        n = n * 62 + _ALPHABET.index(ch)
    return n


def _hash(seed: int, *parts: object) -> int:
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class SeedKind:
    """One kind of seeded object: its id prefix, count, creation times and factory."""

    object: str
    prefix: str
    count: int
    make: Callable[[int], JSON | None]
    seed: int

    def id_for(self, index: int) -> str:
        """Return the id of seeded object ``index``."""
        tail = _b62(_hash(self.seed, self.prefix, index), 11)[:9]
        return f"{self.prefix}1{_b62(index, _INDEX_WIDTH)}{tail}"

    def index_of(self, object_id: str) -> int | None:
        """Return the index encoded in ``object_id``, or None when it is not a seeded id."""
        start = len(self.prefix) + 1
        if not object_id.startswith(self.prefix) or len(object_id) != start + _INDEX_WIDTH + 9:
            return None
        try:
            index = _unb62(object_id[start : start + _INDEX_WIDTH])
        except ValueError:
            return None
        if index >= self.count or self.id_for(index) != object_id:
            return None
        return index


def _amount(usd_cents: int, currency: str) -> int:
    if currency in ZERO_DECIMAL:
        return max(1, round(usd_cents / 100 * 150 * _FX["jpy"] / 1.5))
    return max(1, round(usd_cents * _FX[currency]))


class SeedCatalog:
    """Factories of every seeded kind, keyed by object name (``customer``, ``invoice``, ...)."""

    def __init__(self, seed: int, size: int, now: int) -> None:
        self.seed = seed
        self.size = max(1, size)
        self.roster_customers: tuple[Mapping[str, Any], ...] = ()
        self.start = now - 400 * _DAY
        self.end = now - _DAY
        n = self.size
        self.counts = {
            "product": len(_PRODUCTS),
            "price": len(_PRODUCTS) * len(CURRENCIES),
            "customer": n,
            "subscription": n,
            "invoice": 2 * n,
            "payment_intent": 2 * n,
            "charge": 2 * n,
            "refund": n // 10,
            "credit_note": n // 20,
            "dispute": n // 50,
            "payout": max(1, n // 25),
        }
        self.counts["balance_transaction"] = (
            2 * n + self.counts["refund"] + self.counts["payout"] + self.counts["dispute"]
        )
        prefixes = {
            "product": "prod_",
            "price": "price_",
            "customer": "cus_",
            "subscription": "sub_",
            "invoice": "in_",
            "payment_intent": "pi_",
            "charge": "ch_",
            "refund": "re_",
            "credit_note": "cn_",
            "dispute": "dp_",
            "payout": "po_",
            "balance_transaction": "txn_",
        }
        self.kinds: dict[str, SeedKind] = {
            name: SeedKind(
                name, prefixes[name], self.counts[name], getattr(self, f"_make_{name}"), seed
            )
            for name in prefixes
        }

    def use_customers(self, customers: Sequence[Mapping[str, Any]]) -> None:
        """Take the company fields of seeded customer ``i`` from ``customers[i]`` (a roster).

        The rows give name, e-mail, phone, address and metadata (the Salesforce cross-reference);
        ids, currency, payment method and everything that hangs off a customer (subscription,
        invoices, charges) are seeded as usual, so build the catalogue with ``size`` equal to
        ``len(customers)``.

        Raises:
            ValueError: the catalogue does not have one seeded customer per row.
        """
        if len(customers) != self.counts["customer"]:
            msg = f"{len(customers)} roster customers for {self.counts['customer']} seeded ones"
            raise ValueError(msg)
        self.roster_customers = tuple(customers)

    # -- helpers -------------------------------------------------------------------------
    def id(self, kind: str, index: int) -> str:
        """Return the id of seeded ``kind`` number ``index``."""
        return self.kinds[kind].id_for(index)

    def _after(self, moment: int, days: int) -> int:
        """``days`` after ``moment``, but never past the seed's end: Stripe creates nothing
        in the future (a refund, credit note or dispute of a recent charge would otherwise
        be, and a client reading ``created[gte]`` from it would wait days for the next)."""
        return max(moment, min(moment + days * _DAY, self.end))

    def _h(self, *parts: object) -> int:
        return _hash(self.seed, *parts)

    def _time(self, kind: str, index: int) -> int:
        count = max(1, self.counts[kind])
        return self.start + (self.end - self.start) * index // count

    def customer_currency(self, i: int) -> str:
        """Return the billing currency of seeded customer ``i``."""
        return CURRENCIES[self._h("cur", i) % len(CURRENCIES)]

    def invoice_paid(self, j: int) -> bool:
        """Whether seeded invoice ``j`` was paid (its charge succeeded)."""
        return j % 20 in (3, 7, 11) or self._h("paid", j) % 10 != 0

    def _base(self, kind: str, index: int, **fields: Any) -> JSON:
        return {
            "id": self.id(kind, index),
            "object": kind,
            "created": self._time(kind, index),
            "livemode": False,
            **fields,
        }

    # -- factories -----------------------------------------------------------------------
    def _make_product(self, i: int) -> JSON:
        return self._base(
            "product",
            i,
            active=True,
            name=_PRODUCTS[i],
            description=None,
            features=[],
            images=[],
            metadata={},
            updated=self._time("product", i),
            default_price=self.id("price", i * len(CURRENCIES)),
            tax_code=None,
            unit_label=None,
            url=None,
            type="service",
            shippable=None,
            statement_descriptor=None,
            package_dimensions=None,
        )

    def _make_price(self, i: int) -> JSON:
        product, cur = divmod(i, len(CURRENCIES))
        currency = CURRENCIES[cur]
        metered = _PRODUCTS[product] == "API overage"
        return self._base(
            "price",
            i,
            active=True,
            billing_scheme="per_unit",
            currency=currency,
            product=self.id("product", product),
            metadata={},
            nickname=None,
            lookup_key=f"{_PRODUCTS[product].lower().replace(' ', '_')}_{currency}",
            recurring={
                "interval": "month",
                "interval_count": 1,
                "usage_type": "metered" if metered else "licensed",
                "aggregate_usage": "sum" if metered else None,
                "trial_period_days": None,
            },
            tax_behavior="exclusive",
            tiers_mode=None,
            transform_quantity=None,
            type="recurring",
            unit_amount=_amount(_PRODUCT_USD[product], currency),
            unit_amount_decimal=str(_amount(_PRODUCT_USD[product], currency)),
            custom_unit_amount=None,
        )

    def _make_customer(self, i: int) -> JSON:
        h = self._h("cus", i)
        name = f"{_FIRST[h % len(_FIRST)]} {_SECOND[(h >> 8) % len(_SECOND)]}".strip()
        if h % 13 == 0:
            name = f"  {name.upper()} "  # messy: shouting and stray spaces
        domain = name.split()[0].lower().strip(".") + ".example"
        email: str | None = f"billing{i}@{domain}" if h % 11 else None
        if email and h % 7 == 0:
            email = email.upper()
        country = _COUNTRIES[(h >> 16) % len(_COUNTRIES)]
        phone = None if h % 5 == 0 else f"+1 (555) {h % 1000:03d}-{(h >> 4) % 10000:04d}"
        metadata = {"salesforce_account_id": f"001{h % 10**15:015d}"} if h % 3 == 0 else {}
        currency = self.customer_currency(i)
        return self._base(
            "customer",
            i,
            name=name,
            email=email,
            phone=phone,
            currency=currency,
            description=None,
            balance=0,
            delinquent=(h % 17 == 0),
            discount=None,
            address={
                "city": None,
                "country": country,
                "line1": f"{h % 900 + 1} Main St",
                "line2": None,
                "postal_code": f"{h % 99999:05d}",
                "state": None,
            }
            if h % 4
            else None,
            invoice_prefix=_b62(h, 8).upper(),
            invoice_settings={
                "custom_fields": None,
                "default_payment_method": f"pm_{_b62(h, 14)}",
                "footer": None,
                "rendering_options": None,
            },
            metadata=metadata,
            preferred_locales=[],
            shipping=None,
            tax_exempt="none",
            test_clock=None,
            default_source=None,
        ) | self._roster_fields(i)

    def _roster_fields(self, i: int) -> JSON:
        if not self.roster_customers:
            return {}
        row = self.roster_customers[i]
        return {
            name: copy.deepcopy(row.get(name))
            for name in ("name", "email", "phone", "address", "metadata")
        }

    def _make_subscription(self, i: int) -> JSON:
        h = self._h("sub", i)
        currency = self.customer_currency(i)
        product = h % 4
        price = self._make_price(product * len(CURRENCIES) + CURRENCIES.index(currency))
        created = self._time("customer", i)
        period = 30 * _DAY
        start = created + ((self.end - created) // period) * period
        status = (
            "active",
            "active",
            "active",
            "active",
            "past_due",
            "canceled",
            "trialing",
            "active",
        )[h % 8]
        sub_id = self.id("subscription", i)
        quantity = 1 + h % 5
        item = {
            "id": f"si_{sub_id[4:]}",
            "object": "subscription_item",
            "created": created,
            "metadata": {},
            "price": price,
            "quantity": quantity,
            "subscription": sub_id,
            "tax_rates": [],
            "billing_thresholds": None,
        }
        return {
            "id": sub_id,
            "object": "subscription",
            "created": created,
            "livemode": False,
            "customer": self.id("customer", i),
            "currency": currency,
            "status": status,
            "items": {
                "object": "list",
                "data": [item],
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={sub_id}",
                "total_count": 1,
            },
            "automatic_tax": {"enabled": False, "liability": None},
            "billing_cycle_anchor": created,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": start if status == "canceled" else None,
            "ended_at": start if status == "canceled" else None,
            "collection_method": "charge_automatically",
            "current_period_start": start,
            "current_period_end": start + period,
            "start_date": created,
            "metadata": {},
            "days_until_due": None,
            "default_payment_method": None,
            "description": None,
            "discount": None,
            "latest_invoice": self.id("invoice", 2 * i + 1),
            "pause_collection": None,
            "trial_end": None,
            "trial_start": None,
            "test_clock": None,
            "schedule": None,
            "quantity": quantity,
        }

    def _make_invoice(self, j: int) -> JSON:
        i = j // 2
        sub = self._make_subscription(i)
        item = sub["items"]["data"][0]
        currency = sub["currency"]
        amount = item["price"]["unit_amount"] * item["quantity"]
        paid = self.invoice_paid(j)
        created = self._time("invoice", j)
        status = "paid" if paid else ("open", "uncollectible", "void")[self._h("st", j) % 3]
        inv_id = self.id("invoice", j)
        line = {
            "id": f"il_{inv_id[3:]}",
            "object": "line_item",
            "amount": amount,
            "currency": currency,
            "description": f"{item['quantity']} x subscription",
            "discountable": True,
            "livemode": False,
            "metadata": {},
            "period": {"start": created, "end": created + 30 * _DAY},
            "price": item["price"],
            "proration": False,
            "quantity": item["quantity"],
            "subscription": sub["id"],
            "subscription_item": item["id"],
            "type": "subscription",
            "discounts": [],
            "tax_amounts": [],
            "tax_rates": [],
        }
        return {
            "id": inv_id,
            "object": "invoice",
            "created": created,
            "livemode": False,
            "customer": sub["customer"],
            "subscription": sub["id"],
            "currency": currency,
            "status": status,
            "paid": paid,
            "paid_out_of_band": False,
            "amount_due": amount,
            "amount_paid": amount if paid else 0,
            "amount_remaining": 0 if paid else amount,
            "amount_shipping": 0,
            "attempt_count": 1,
            "attempted": True,
            "auto_advance": not paid,
            "automatic_tax": {"enabled": False, "status": None, "liability": None},
            "billing_reason": "subscription_cycle" if j % 2 else "subscription_create",
            "collection_method": "charge_automatically",
            "default_tax_rates": [],
            "description": None,
            "discount": None,
            "due_date": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "lines": {
                "object": "list",
                "data": [line],
                "has_more": False,
                "url": f"/v1/invoices/{inv_id}/lines",
                "total_count": 1,
            },
            "metadata": {},
            "number": f"{_b62(self._h('num', i), 8).upper()}-{j % 2 + 1:04d}",
            "charge": self.id("charge", j),
            "payment_intent": self.id("payment_intent", j),
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_start": created - 30 * _DAY,
            "period_end": created,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "starting_balance": 0,
            "ending_balance": 0,
            "status_transitions": {
                "finalized_at": created,
                "marked_uncollectible_at": None,
                "paid_at": created if paid else None,
                "voided_at": None,
            },
            "subtotal": amount,
            "subtotal_excluding_tax": amount,
            "tax": None,
            "total": amount,
            "total_excluding_tax": amount,
            "total_tax_amounts": [],
            "total_discount_amounts": [],
            "webhooks_delivered_at": created,
            "next_payment_attempt": None,
            "test_clock": None,
        }

    def _make_payment_intent(self, j: int) -> JSON:
        inv = self._make_invoice(j)
        paid = inv["paid"]
        return self._base(
            "payment_intent",
            j,
            amount=inv["amount_due"],
            amount_received=inv["amount_due"] if paid else 0,
            currency=inv["currency"],
            customer=inv["customer"],
            invoice=inv["id"],
            capture_method="automatic",
            confirmation_method="automatic",
            description=None,
            metadata={},
            latest_charge=self.id("charge", j),
            payment_method_types=["card"],
            status="succeeded" if paid else "requires_payment_method",
            last_payment_error=None
            if paid
            else {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
            },
            canceled_at=None,
            cancellation_reason=None,
            payment_method=None,
        )

    def _make_charge(self, j: int) -> JSON:
        inv = self._make_invoice(j)
        paid = inv["paid"]
        refund = j // 20 if j % 20 == 3 and j // 20 < self.counts["refund"] else None
        dispute = j // 100 if j % 100 == 7 and j // 100 < self.counts["dispute"] else None
        refunded = 0 if refund is None else inv["amount_due"] // 2 or inv["amount_due"]
        return self._base(
            "charge",
            j,
            amount=inv["amount_due"],
            amount_captured=inv["amount_due"] if paid else 0,
            amount_refunded=refunded,
            currency=inv["currency"],
            customer=inv["customer"],
            invoice=inv["id"],
            payment_intent=self.id("payment_intent", j),
            captured=paid,
            paid=paid,
            refunded=refunded == inv["amount_due"] and refunded > 0,
            disputed=dispute is not None,
            status="succeeded" if paid else "failed",
            balance_transaction=self.id("balance_transaction", j) if paid else None,
            billing_details={"address": None, "email": None, "name": None, "phone": None},
            failure_code=None if paid else "card_declined",
            failure_message=None if paid else "Your card has insufficient funds.",
            metadata={},
            description=None,
            outcome=None,
            payment_method=None,
            receipt_email=None,
            statement_descriptor=None,
        )

    def _txn(
        self,
        index: int,
        source: str,
        amount: int,
        *,
        currency: str,
        kind: str,
        created: int,
        fee: int = 0,
        category: str = "charge",
    ) -> JSON:
        return self._base(
            "balance_transaction",
            index,
            amount=amount,
            currency=currency,
            fee=fee,
            fee_details=[
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency,
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ]
            if fee
            else [],
            net=amount - fee,
            source=source,
            type=kind,
            reporting_category=category,
            status="available",
            available_on=created + 2 * _DAY,
            description=None,
            exchange_rate=None,
        ) | {"created": created}

    def _make_balance_transaction(self, k: int) -> JSON | None:
        n = self.size
        refunds, payouts = self.counts["refund"], self.counts["payout"]
        if k < 2 * n:
            if not self.invoice_paid(k):
                return None
            charge = self._make_charge(k)
            fee = round(charge["amount"] * 0.029) + (0 if charge["currency"] == "jpy" else 30)
            return self._txn(
                k,
                charge["id"],
                charge["amount"],
                currency=charge["currency"],
                kind="charge",
                created=charge["created"],
                fee=fee,
            )
        k2 = k - 2 * n
        if k2 < refunds:
            refund = self._make_refund(k2)
            return self._txn(
                k,
                refund["id"],
                -refund["amount"],
                currency=refund["currency"],
                kind="refund",
                created=refund["created"],
                category="refund",
            )
        k3 = k2 - refunds
        if k3 < payouts:
            payout = self._make_payout(k3)
            return self._txn(
                k,
                payout["id"],
                -payout["amount"],
                currency=payout["currency"],
                kind="payout",
                created=payout["created"],
                category="payout",
            )
        dispute = self._make_dispute(k3 - payouts)
        return self._txn(
            k,
            dispute["id"],
            -dispute["amount"],
            currency=dispute["currency"],
            kind="adjustment",
            created=dispute["created"],
            fee=1_500,
            category="dispute",
        )

    def _make_refund(self, r: int) -> JSON:
        charge = self._make_charge(20 * r + 3)
        return self._base(
            "refund",
            r,
            amount=charge["amount_refunded"],
            currency=charge["currency"],
            charge=charge["id"],
            payment_intent=charge["payment_intent"],
            balance_transaction=self.id("balance_transaction", 2 * self.size + r),
            reason="requested_by_customer",
            status="succeeded",
            metadata={},
        ) | {"created": self._after(charge["created"], 3)}

    def _make_credit_note(self, c: int) -> JSON:
        inv = self._make_invoice(40 * c + 11)
        amount = max(1, inv["total"] // 4)
        cn_id = self.id("credit_note", c)
        return self._base(
            "credit_note",
            c,
            amount=amount,
            amount_shipping=0,
            currency=inv["currency"],
            customer=inv["customer"],
            invoice=inv["id"],
            discount_amount=0,
            discount_amounts=[],
            memo="Service credit",
            metadata={},
            number=f"{inv['number']}-CN-01",
            pdf=f"https://pay.stripe.com/credit_notes/{cn_id}/pdf",
            reason="product_unsatisfactory",
            status="issued",
            subtotal=amount,
            subtotal_excluding_tax=amount,
            tax_amounts=[],
            total=amount,
            total_excluding_tax=amount,
            type="post_payment",
            voided_at=None,
            out_of_band_amount=None,
            refund=None,
            customer_balance_transaction=None,
            effective_at=inv["created"] + 5 * _DAY,
            lines={
                "object": "list",
                "data": [
                    {
                        "id": f"cnli_{cn_id[3:]}",
                        "object": "credit_note_line_item",
                        "amount": amount,
                        "description": "Service credit",
                        "discount_amount": 0,
                        "discount_amounts": [],
                        "invoice_line_item": inv["lines"]["data"][0]["id"],
                        "livemode": False,
                        "quantity": 1,
                        "tax_amounts": [],
                        "tax_rates": [],
                        "type": "invoice_line_item",
                        "unit_amount": amount,
                        "unit_amount_decimal": str(amount),
                    }
                ],
                "has_more": False,
                "url": f"/v1/credit_notes/{cn_id}/lines",
                "total_count": 1,
            },
        ) | {"created": self._after(inv["created"], 5)}

    def _make_dispute(self, d: int) -> JSON:
        charge = self._make_charge(100 * d + 7)
        status = ("needs_response", "under_review", "won", "lost")[self._h("dp", d) % 4]
        return self._base(
            "dispute",
            d,
            amount=charge["amount"],
            currency=charge["currency"],
            charge=charge["id"],
            payment_intent=charge["payment_intent"],
            balance_transactions=[],
            evidence={},
            is_charge_refundable=False,
            metadata={},
            evidence_details={
                "due_by": charge["created"] + 10 * _DAY,
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            reason="fraudulent",
            status=status,
        ) | {"created": self._after(charge["created"], 7)}

    def _make_payout(self, p: int) -> JSON:
        h = self._h("po", p)
        currency = CURRENCIES[h % len(CURRENCIES)]
        created = self._time("payout", p)
        return self._base(
            "payout",
            p,
            amount=_amount(50_000 + h % 500_000, currency),
            currency=currency,
            arrival_date=created + 2 * _DAY,
            automatic=True,
            balance_transaction=self.id(
                "balance_transaction", 2 * self.size + self.counts["refund"] + p
            ),
            method="standard",
            reconciliation_status="completed",
            source_type="card",
            status="paid",
            type="bank_account",
            description="STRIPE PAYOUT",
            metadata={},
            destination=f"ba_{_b62(h, 14)}",
            failure_code=None,
            failure_message=None,
            statement_descriptor=None,
        )
