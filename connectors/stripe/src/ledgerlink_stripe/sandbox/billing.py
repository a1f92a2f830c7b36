"""Billing behaviour of the sandbox: what a write does, which events it emits, and time travel.

Each function takes the :class:`SandboxState` and the decoded form parameters, changes state
the way Stripe would and emits the matching events (``customer.created``, ``invoice.paid``,
``charge.dispute.created``, ...). Test clocks (``/v1/test_helpers/test_clocks``) drive
renewals, proration, cancellation at period end, dunning retries, payout arrival and the late
settlement of a charge's balance transaction.

Magic payment methods follow Stripe's test cards: ``pm_card_chargeCustomerFail`` and
``pm_card_visa_chargeDeclined`` decline, ``pm_card_createDispute`` succeeds and is disputed.
Dispute evidence follows Stripe's test values: ``winning_evidence`` wins the dispute (the
funds are reinstated), ``losing_evidence`` loses it; closing a dispute accepts the loss.

Billing periods: an annual (or weekly, daily) price renews on Stripe's calendar, the same date
a year later; a month is 30 days in the sandbox (Stripe renews on the same day of the next
month), so monthly renewals drift by a day or two against the calendar.

Usage-based prices follow the pinned API version: a metered price names a billing meter
(``recurring[meter]``), usage arrives as meter events (``/v1/billing/meter_events``) and is
billed in arrears, on the invoice that opens the next period, with the line's period being the
one the usage was recorded in. The legacy ``usage_records`` path (removed from the API in
2025-03-31.basil) still works for the seeded legacy prices.
"""

from __future__ import annotations

import calendar
import copy
from datetime import UTC, datetime
from typing import Any

from ledgerlink_stripe.sandbox.data import ZERO_DECIMAL
from ledgerlink_stripe.sandbox.store import SandboxState, new_id

__all__ = ["DECLINING_METHODS", "Billing", "SandboxError"]

JSON = dict[str, Any]
DAY = 86_400
PERIOD = 30 * DAY
DECLINING_METHODS = frozenset({"pm_card_chargeCustomerFail", "pm_card_visa_chargeDeclined"})
DISPUTING_METHODS = frozenset({"pm_card_createDispute"})
RETRY_AFTER_FAILURE = 3 * DAY


class SandboxError(Exception):
    """An API error the sandbox answers in Stripe's error format."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        extra: JSON | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.extra = extra or {}

    def body(self) -> JSON:
        """Return the error body ``{"error": {...}}``."""
        error: JSON = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def missing(object_name: str, object_id: str, param: str = "id") -> SandboxError:
    """Return Stripe's ``resource_missing`` error for ``object_id``."""
    return SandboxError(
        404,
        "invalid_request_error",
        f"No such {object_name}: '{object_id}'",
        code="resource_missing",
        param=param,
    )


def required(param: str) -> SandboxError:
    """Return Stripe's ``parameter_missing`` error."""
    return SandboxError(
        400,
        "invalid_request_error",
        f"Missing required param: {param}.",
        code="parameter_missing",
        param=param,
    )


def _int(params: JSON, name: str, default: int | None = None) -> int:
    value = params.get(name)
    if value is None or value == "":
        if default is None:
            raise required(name)
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SandboxError(
            400,
            "invalid_request_error",
            f"Invalid integer: {value}",
            code="parameter_invalid_integer",
            param=name,
        ) from None


def _bool(value: Any) -> bool:
    return str(value).lower() == "true"


def _period_end(start: int, recurring: JSON | None) -> int:
    """Return the end of the billing period that starts at ``start`` for a price's interval.

    Years follow the calendar as Stripe's do (a period from 29 February ends on 28 February);
    months are 30 days, the sandbox's simplification (see the module docstring).
    """
    interval = (recurring or {}).get("interval") or "month"
    count = int((recurring or {}).get("interval_count") or 1)
    if interval == "year":
        moment = datetime.fromtimestamp(start, UTC)
        year = moment.year + count
        day = min(moment.day, calendar.monthrange(year, moment.month)[1])
        return int(moment.replace(year=year, day=day).timestamp())
    if interval == "week":
        return start + 7 * DAY * count
    if interval == "day":
        return start + DAY * count
    return start + PERIOD * count


def _recurring(sub: JSON) -> JSON | None:
    """The ``recurring`` settings of a subscription's prices (Stripe requires one interval)."""
    for item in sub["items"]["data"]:
        recurring: JSON | None = item["price"].get("recurring")
        if recurring:
            return recurring
    return None


def merge_metadata(current: JSON, update: Any) -> JSON:
    """Apply a metadata update as Stripe does: an empty value removes the key."""
    if update in (None, ""):
        return {} if update == "" else dict(current)
    if not isinstance(update, dict):
        raise SandboxError(
            400, "invalid_request_error", "Invalid metadata: must be a hash", param="metadata"
        )
    merged = dict(current)
    for key, value in update.items():
        if value in ("", None):
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return merged


class Billing:
    """The sandbox's write paths and its time travel, over one :class:`SandboxState`."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.pending_settlement: list[str] = []  # charges whose balance transaction is due

    # -- lookups ---------------------------------------------------------------------------
    def get(self, object_name: str, object_id: str, param: str = "id") -> JSON:
        """Return a copy of an object, or raise ``resource_missing``."""
        obj = self.state.store(object_name).get(object_id)
        if obj is None:
            raise missing(object_name, object_id, param)
        return copy.deepcopy(obj)

    def time_for(self, customer_id: str | None) -> int:
        """The time of a customer's world: its test clock's frozen time, else the sandbox now."""
        if customer_id:
            customer = self.state.store("customer").get(customer_id)
            clock_id = customer.get("test_clock") if customer else None
            if clock_id:
                clock = self.state.store("test_helpers.test_clock").get(clock_id)
                if clock:
                    return int(clock["frozen_time"])
        return self.state.now()

    def _put(self, obj: JSON) -> JSON:
        self.state.store(obj["object"]).put(obj)
        return obj

    # -- customers, products, prices ---------------------------------------------------------
    def create_customer(self, params: JSON) -> JSON:
        """Create a customer (optionally attached to a test clock)."""
        clock = params.get("test_clock")
        if clock and self.state.store("test_helpers.test_clock").get(clock) is None:
            raise missing("test_clock", clock, "test_clock")
        customer_id = new_id("cus_")
        created = self.time_for(None)
        if clock:
            created = int(self.state.store("test_helpers.test_clock").get(clock)["frozen_time"])  # type: ignore[index]
        settings = params.get("invoice_settings") or {}
        payment_method = params.get("payment_method") or settings.get("default_payment_method")
        customer: JSON = {
            "id": customer_id,
            "object": "customer",
            "created": created,
            "livemode": False,
            "name": params.get("name"),
            "email": params.get("email"),
            "phone": params.get("phone"),
            "description": params.get("description"),
            "currency": None,
            "balance": _int(params, "balance", 0),
            "delinquent": False,
            "discount": None,
            "address": params.get("address"),
            "default_source": None,
            "invoice_prefix": customer_id[-8:].upper(),
            "preferred_locales": [],
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": payment_method,
                "footer": None,
                "rendering_options": None,
            },
            "metadata": merge_metadata({}, params.get("metadata")),
            "shipping": None,
            "tax_exempt": params.get("tax_exempt") or "none",
            "test_clock": clock,
        }
        self._put(customer)
        self.state.emit("customer.created", customer)
        return customer

    def update_customer(self, customer_id: str, params: JSON) -> JSON:
        """Update a customer; metadata keys merge, an empty value removes one."""
        customer = self.get("customer", customer_id)
        previous: JSON = {}
        for key in ("name", "email", "phone", "description", "address", "tax_exempt"):
            if key in params and customer.get(key) != params[key]:
                previous[key] = customer.get(key)
                customer[key] = params[key] or None
        if "metadata" in params:
            merged = merge_metadata(customer["metadata"], params["metadata"])
            if merged != customer["metadata"]:
                previous["metadata"] = customer["metadata"]
                customer["metadata"] = merged
        settings = params.get("invoice_settings") or {}
        if "default_payment_method" in settings:
            previous["invoice_settings"] = dict(customer["invoice_settings"])
            customer["invoice_settings"]["default_payment_method"] = (
                settings["default_payment_method"] or None
            )
        self._put(customer)
        if previous:
            self.state.emit("customer.updated", customer, previous)
        return customer

    def delete_customer(self, customer_id: str) -> JSON:
        """Delete a customer and answer the deleted stub."""
        self.get("customer", customer_id)
        self.state.store("customer").delete(customer_id)
        stub = {"id": customer_id, "object": "customer", "deleted": True}
        self.state.emit("customer.deleted", stub)
        return stub

    def create_product(self, params: JSON) -> JSON:
        """Create a product."""
        if not params.get("name"):
            raise required("name")
        now = self.state.now()
        product = {
            "id": params.get("id") or new_id("prod_"),
            "object": "product",
            "created": now,
            "updated": now,
            "livemode": False,
            "active": True,
            "name": params["name"],
            "description": params.get("description"),
            "features": [],
            "images": [],
            "metadata": merge_metadata({}, params.get("metadata")),
            "default_price": None,
            "tax_code": None,
            "unit_label": None,
            "url": None,
            "type": "service",
            "shippable": None,
            "statement_descriptor": None,
            "package_dimensions": None,
        }
        self._put(product)
        self.state.emit("product.created", product)
        return product

    def create_price(self, params: JSON) -> JSON:
        """Create a price for a product."""
        product = params.get("product") or required("product")
        if isinstance(product, SandboxError):
            raise product
        self.get("product", product, "product")
        currency = str(params.get("currency") or "").lower()
        if not currency:
            raise required("currency")
        recurring = params.get("recurring")
        meter = self._price_meter(recurring)
        price = {
            "id": new_id("price_"),
            "object": "price",
            "created": self.state.now(),
            "livemode": False,
            "active": True,
            "billing_scheme": "per_unit",
            "currency": currency,
            "product": product,
            "nickname": params.get("nickname"),
            "lookup_key": params.get("lookup_key"),
            "metadata": merge_metadata({}, params.get("metadata")),
            "recurring": None
            if not recurring
            else {
                "interval": recurring.get("interval", "month"),
                "interval_count": int(recurring.get("interval_count", 1)),
                "usage_type": recurring.get("usage_type", "licensed"),
                "meter": meter,
                "trial_period_days": None,
            },
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": _int(params, "unit_amount"),
            "unit_amount_decimal": str(_int(params, "unit_amount")),
            "custom_unit_amount": None,
        }
        self._put(price)
        self.state.emit("price.created", price)
        return price

    def _price_meter(self, recurring: Any) -> str | None:
        """The meter a new recurring price bills; a metered price must name one (basil)."""
        if not isinstance(recurring, dict) or recurring.get("usage_type") != "metered":
            return None
        meter = recurring.get("meter")
        if not meter:
            raise SandboxError(
                400,
                "invalid_request_error",
                "A metered price must be associated with a meter: pass recurring[meter].",
                param="recurring[meter]",
            )
        self.get("billing.meter", meter, "recurring[meter]")
        return str(meter)

    # -- usage-based billing: meters and meter events ------------------------------------------
    def create_meter(self, params: JSON) -> JSON:
        """Create a billing meter (``POST /v1/billing/meters``)."""
        for name in ("display_name", "event_name"):
            if not params.get(name):
                raise required(name)
        formula = (params.get("default_aggregation") or {}).get("formula")
        if formula not in ("sum", "count", "last"):
            raise SandboxError(
                400,
                "invalid_request_error",
                "Invalid default_aggregation[formula]: must be one of sum, count or last",
                param="default_aggregation[formula]",
            )
        customer_key = (params.get("customer_mapping") or {}).get("event_payload_key")
        value_key = (params.get("value_settings") or {}).get("event_payload_key")
        now = self.state.now()
        meter = {
            "id": new_id("mtr_"),
            "object": "billing.meter",
            "created": now,
            "updated": now,
            "livemode": False,
            "display_name": params["display_name"],
            "event_name": params["event_name"],
            "event_time_window": params.get("event_time_window"),
            "status": "active",
            "status_transitions": {"deactivated_at": None},
            "customer_mapping": {
                "event_payload_key": customer_key or "stripe_customer_id",
                "type": "by_id",
            },
            "default_aggregation": {"formula": formula},
            "value_settings": {"event_payload_key": value_key or "value"},
        }
        return self._put(meter)

    def create_meter_event(self, params: JSON) -> JSON:
        """Record usage (``POST /v1/billing/meter_events``), billed at the next renewal.

        A repeated ``identifier`` is kept once (Stripe enforces uniqueness over at least 24
        hours). The timestamp defaults to the customer's time (its test clock's, if any) and
        must lie within the 35 days before it or at most 5 minutes after.
        """
        name = params.get("event_name") or required("event_name")
        if isinstance(name, SandboxError):
            raise name
        payload = params.get("payload")
        if not isinstance(payload, dict):
            raise required("payload")
        meters = [
            m
            for m in self.state.store("billing.meter").added.values()
            if m and m["event_name"] == name and m["status"] == "active"
        ]
        if not meters:
            raise SandboxError(
                400,
                "invalid_request_error",
                f"No active meter was found for event_name {name}.",
                param="event_name",
            )
        meter = meters[0]
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        customer = payload.get(customer_key) or required(f"payload[{customer_key}]")
        if isinstance(customer, SandboxError):
            raise customer
        self.get("customer", customer, f"payload[{customer_key}]")
        _int(payload, value_key)
        now = self.time_for(customer)
        timestamp = _int(params, "timestamp", now)
        if not now - 35 * DAY <= timestamp <= now + 300:
            raise SandboxError(
                400,
                "invalid_request_error",
                "Timestamp must be within the past 35 calendar days or up to 5 minutes in the "
                "future.",
                param="timestamp",
            )
        identifier = params.get("identifier") or new_id("")[1:]
        events = self.state.store("billing.meter_event")
        if events.get(identifier) is None:
            events.put(
                {
                    "id": identifier,
                    "object": "billing.meter_event",
                    "created": now,
                    "event_name": name,
                    "identifier": identifier,
                    "livemode": False,
                    "payload": {str(k): str(v) for k, v in payload.items()},
                    "timestamp": timestamp,
                }
            )
        event = dict(events.get(identifier) or {})
        event.pop("id", None)
        return event

    def _metered_usage(self, customer: str, price: JSON, period: tuple[int, int]) -> int:
        """Aggregate a customer's meter events of ``[start, end)`` with the meter's formula."""
        meter_id = (price.get("recurring") or {}).get("meter")
        meter = self.state.store("billing.meter").get(meter_id) if meter_id else None
        if meter is None:
            return 0
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        events = sorted(
            (
                e
                for e in self.state.store("billing.meter_event").added.values()
                if e
                and e["event_name"] == meter["event_name"]
                and e["payload"].get(customer_key) == customer
                and period[0] <= e["timestamp"] < period[1]
            ),
            key=lambda e: (e["timestamp"], e["created"]),
        )
        formula = meter["default_aggregation"]["formula"]
        if formula == "count":
            return len(events)
        values = [int(e["payload"][value_key]) for e in events]
        if formula == "last":
            return values[-1] if values else 0
        return sum(values)

    # -- subscriptions -----------------------------------------------------------------------
    def _item(self, subscription_id: str, spec: JSON, created: int) -> JSON:
        price_id = spec.get("price") or required("items[0][price]")
        if isinstance(price_id, SandboxError):
            raise price_id
        price = self.get("price", price_id, "items[0][price]")
        metered = (price.get("recurring") or {}).get("usage_type") == "metered"
        return {
            "id": new_id("si_"),
            "object": "subscription_item",
            "created": created,
            "metadata": merge_metadata({}, spec.get("metadata")),
            "price": price,
            "quantity": None if metered else _int(spec, "quantity", 1),
            "subscription": subscription_id,
            "tax_rates": [],
            "billing_thresholds": None,
            "usage": 0,
        }

    @staticmethod
    def _items(sub: JSON) -> list[JSON]:
        items: list[JSON] = sub["items"]["data"]
        return items

    def create_subscription(self, params: JSON) -> JSON:
        """Create a subscription, invoice its first period and try to pay it."""
        customer_id = params.get("customer") or required("customer")
        if isinstance(customer_id, SandboxError):
            raise customer_id
        customer = self.get("customer", customer_id, "customer")
        specs = params.get("items")
        if not specs:
            raise required("items")
        now = self.time_for(customer_id)
        sub_id = new_id("sub_")
        items = [self._item(sub_id, spec, now) for spec in specs]
        currency = items[0]["price"]["currency"]
        if any(item["price"]["currency"] != currency for item in items):
            raise SandboxError(
                400,
                "invalid_request_error",
                "All prices on a subscription must have the same currency.",
                param="items",
            )
        sub: JSON = {
            "id": sub_id,
            "object": "subscription",
            "created": now,
            "livemode": False,
            "customer": customer_id,
            "currency": currency,
            "status": "incomplete",
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={sub_id}",
                "total_count": len(items),
            },
            "automatic_tax": {"enabled": False, "liability": None},
            "billing_cycle_anchor": now,
            "cancel_at": None,
            "cancel_at_period_end": _bool(params.get("cancel_at_period_end")),
            "canceled_at": None,
            "ended_at": None,
            "collection_method": params.get("collection_method") or "charge_automatically",
            "current_period_start": now,
            "current_period_end": _period_end(now, items[0]["price"].get("recurring")),
            "start_date": now,
            "metadata": merge_metadata({}, params.get("metadata")),
            "days_until_due": None,
            "default_payment_method": params.get("default_payment_method"),
            "description": params.get("description"),
            "discount": None,
            "latest_invoice": None,
            "pause_collection": None,
            "trial_end": None,
            "trial_start": None,
            "test_clock": customer.get("test_clock"),
            "schedule": None,
            "quantity": items[0]["quantity"],
        }
        if customer.get("currency") is None:
            customer["currency"] = currency
            self._put(customer)
        self._put(sub)
        self.state.emit("customer.subscription.created", sub)
        invoice = self._invoice_for_period(sub, now, "subscription_create")
        self._attempt_payment(invoice["id"], sub["default_payment_method"])
        return self.get("subscription", sub_id)

    def update_subscription(self, sub_id: str, params: JSON) -> JSON:  # noqa: PLR0912, PLR0915 - one pass over Stripe's update rules
        """Change items (with proration), cancel at period end or reactivate."""
        sub = self.get("subscription", sub_id)
        if sub["status"] == "canceled":
            raise SandboxError(
                400,
                "invalid_request_error",
                "A canceled subscription can only update its cancellation_details and metadata.",
                param="items",
            )
        previous: JSON = {}
        now = self.time_for(sub["customer"])
        if "cancel_at_period_end" in params:
            flag = _bool(params["cancel_at_period_end"])
            if flag != sub["cancel_at_period_end"]:
                previous["cancel_at_period_end"] = sub["cancel_at_period_end"]
                sub["cancel_at_period_end"] = flag
                sub["cancel_at"] = sub["current_period_end"] if flag else None
                sub["canceled_at"] = now if flag else None
        if "metadata" in params:
            previous["metadata"] = sub["metadata"]
            sub["metadata"] = merge_metadata(sub["metadata"], params["metadata"])
        behavior = params.get("proration_behavior") or "create_prorations"
        prorations: list[tuple[JSON, int]] = []  # (price, signed quantity-weighted amount)
        if params.get("items"):
            previous["items"] = copy.deepcopy(sub["items"])
            items = self._items(sub)
            remaining = max(0, sub["current_period_end"] - now)
            share = remaining / max(1, sub["current_period_end"] - sub["current_period_start"])
            for spec in params["items"]:
                existing = next((it for it in items if it["id"] == spec.get("id")), None)
                if existing is None:
                    item = self._item(sub_id, spec, now)
                    items.append(item)
                    prorations.append((item["price"], round(_unit(item) * share)))
                    continue
                old_total = _unit(existing)
                if _bool(spec.get("deleted")):
                    items.remove(existing)
                    prorations.append((existing["price"], -round(old_total * share)))
                    continue
                if spec.get("price"):
                    existing["price"] = self.get("price", spec["price"], "items[0][price]")
                if spec.get("quantity") not in (None, ""):
                    existing["quantity"] = int(spec["quantity"])
                prorations.append((existing["price"], round((_unit(existing) - old_total) * share)))
            sub["items"]["total_count"] = len(items)
            sub["quantity"] = items[0]["quantity"] if items else None
        self._put(sub)
        if previous:
            self.state.emit("customer.subscription.updated", sub, previous)
        if behavior != "none":
            for price, amount in prorations:
                if amount:
                    self._invoice_item(
                        sub["customer"],
                        amount,
                        sub["currency"],
                        f"{'Remaining' if amount > 0 else 'Unused'} time on {price['id']}",
                        subscription=sub_id,
                        proration=True,
                        period=(now, sub["current_period_end"]),
                        price=price,
                    )
        if behavior == "always_invoice" and prorations:
            invoice = self._new_invoice(
                sub["customer"], sub["currency"], now, "subscription_update", subscription=sub_id
            )
            self._finalize(invoice["id"])
            self._attempt_payment(invoice["id"], sub["default_payment_method"])
        return self.get("subscription", sub_id)

    def cancel_subscription(self, sub_id: str, params: JSON) -> JSON:
        """Cancel a subscription at once (``DELETE /v1/subscriptions/{id}``)."""
        sub = self.get("subscription", sub_id)
        if sub["status"] == "canceled":
            return sub
        now = self.time_for(sub["customer"])
        self._end(sub, now)
        if _bool(params.get("invoice_now")):
            invoice = self._new_invoice(
                sub["customer"], sub["currency"], now, "subscription_update", subscription=sub_id
            )
            self._finalize(invoice["id"])
        return self.get("subscription", sub_id)

    def _end(self, sub: JSON, now: int) -> None:
        previous = {"status": sub["status"]}
        sub.update(status="canceled", canceled_at=sub["canceled_at"] or now, ended_at=now)
        self._put(sub)
        self.state.emit("customer.subscription.deleted", sub, previous)

    def report_usage(self, item_id: str, params: JSON) -> JSON:
        """Record metered usage on a subscription item (summed into the next invoice)."""
        for sub in self.state.store("subscription").added.values():
            if sub is None:
                continue
            for item in self._items(sub):
                if item["id"] == item_id:
                    quantity = _int(params, "quantity")
                    if params.get("action") == "set":
                        item["usage"] = quantity
                    else:
                        item["usage"] = item.get("usage", 0) + quantity
                    self._put(sub)
                    return {
                        "id": new_id("mbur_"),
                        "object": "usage_record",
                        "livemode": False,
                        "quantity": quantity,
                        "subscription_item": item_id,
                        "timestamp": _int(params, "timestamp", self.state.now()),
                    }
        raise missing("subscription_item", item_id)

    # -- invoices ----------------------------------------------------------------------------
    def _invoice_item(
        self,
        customer: str,
        amount: int,
        currency: str,
        description: str,
        *,
        subscription: str | None = None,
        proration: bool = False,
        period: tuple[int, int] | None = None,
        price: JSON | None = None,
        invoice: str | None = None,
        quantity: int = 1,
    ) -> JSON:
        now = self.time_for(customer)
        start, end = period or (now, now)
        item = {
            "id": new_id("ii_"),
            "object": "invoiceitem",
            "amount": amount,
            "currency": currency,
            "customer": customer,
            "date": now,
            "description": description,
            "discountable": not proration,
            "invoice": invoice,
            "livemode": False,
            "metadata": {},
            "period": {"start": start, "end": end},
            "price": price,
            "proration": proration,
            "quantity": quantity,
            "subscription": subscription,
            "unit_amount": amount // max(1, quantity),
        }
        self._put(item)
        self.state.emit("invoiceitem.created", item)
        if invoice:
            self._add_line(invoice, item)
        return item

    def create_invoice_item(self, params: JSON) -> JSON:
        """Create an invoice item, pending or on a draft invoice (``invoice=``)."""
        customer = params.get("customer") or required("customer")
        if isinstance(customer, SandboxError):
            raise customer
        self.get("customer", customer, "customer")
        quantity = _int(params, "quantity", 1)
        if "price" in params:  # removed in 2025-03-31.basil: pricing[price] instead
            raise SandboxError(
                400,
                "invalid_request_error",
                "Received unknown parameter: price",
                code="parameter_unknown",
                param="price",
            )
        pricing = params.get("pricing")
        price_id = pricing.get("price") if isinstance(pricing, dict) else None
        price = self.get("price", price_id, "pricing[price]") if price_id else None
        if price is not None:
            amount, currency = price["unit_amount"] * quantity, price["currency"]
        else:
            unit = params.get("unit_amount")
            amount = _int(params, "unit_amount") * quantity if unit else _int(params, "amount")
            currency = str(params.get("currency") or "").lower()
            if not currency:
                raise required("currency")
        invoice = params.get("invoice")
        if invoice:
            draft = self.get("invoice", invoice, "invoice")
            if draft["status"] != "draft":
                raise SandboxError(
                    400,
                    "invalid_request_error",
                    "You can only add invoice items to draft invoices.",
                    code="invoice_not_editable",
                    param="invoice",
                )
        return self._invoice_item(
            customer,
            amount,
            currency,
            params.get("description") or "Invoice item",
            price=price,
            invoice=invoice,
            quantity=quantity,
        )

    def _new_invoice(
        self,
        customer: str,
        currency: str,
        now: int,
        reason: str,
        *,
        subscription: str | None = None,
        collection_method: str = "charge_automatically",
        days_until_due: int | None = None,
        metadata: JSON | None = None,
        description: str | None = None,
    ) -> JSON:
        inv_id = new_id("in_")
        invoice = {
            "id": inv_id,
            "object": "invoice",
            "created": now,
            "livemode": False,
            "customer": customer,
            "subscription": subscription,
            "currency": currency,
            "status": "draft",
            "paid": False,
            "paid_out_of_band": False,
            "amount_due": 0,
            "amount_paid": 0,
            "amount_remaining": 0,
            "amount_shipping": 0,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": True,
            "automatic_tax": {"enabled": False, "status": None, "liability": None},
            "billing_reason": reason,
            "collection_method": collection_method,
            "default_tax_rates": [],
            "description": description,
            "discount": None,
            "due_date": now + days_until_due * DAY if days_until_due else None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "lines": {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/invoices/{inv_id}/lines",
                "total_count": 0,
            },
            "metadata": metadata or {},
            "number": None,
            "charge": None,
            "payment_intent": None,
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_start": now,
            "period_end": now,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "starting_balance": 0,
            "ending_balance": None,
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": 0,
            "subtotal_excluding_tax": 0,
            "tax": None,
            "total": 0,
            "total_excluding_tax": 0,
            "total_tax_amounts": [],
            "total_discount_amounts": [],
            "webhooks_delivered_at": None,
            "next_payment_attempt": None,
            "test_clock": None,
        }
        self._put(invoice)
        self.state.emit("invoice.created", invoice)
        # Pending items (prorations) of this subscription go onto its next invoice.
        if subscription:
            for item in list(self.state.store("invoiceitem").added.values()):
                if item and item["invoice"] is None and item["subscription"] == subscription:
                    item["invoice"] = inv_id
                    self._add_line(inv_id, item)
        return self.get("invoice", inv_id)

    def _add_line(self, invoice_id: str, item: JSON) -> None:
        invoice = self.get("invoice", invoice_id)
        item["invoice"] = invoice_id
        self._put(item)
        line = {
            "id": f"il_{item['id'][3:]}",
            "object": "line_item",
            "amount": item["amount"],
            "currency": item["currency"],
            "description": item["description"],
            "discountable": item["discountable"],
            "livemode": False,
            "metadata": {},
            "period": item["period"],
            "price": item["price"],
            "proration": item["proration"],
            "quantity": item["quantity"],
            "subscription": item["subscription"],
            "subscription_item": None,
            "type": "invoiceitem",
            "discounts": [],
            "tax_amounts": [],
            "tax_rates": [],
            "invoice_item": item["id"],
        }
        self._append_line(invoice, line)

    def _append_line(self, invoice: JSON, line: JSON) -> None:
        invoice["lines"]["data"].append(line)
        invoice["lines"]["total_count"] = len(invoice["lines"]["data"])
        total = sum(int(entry["amount"]) for entry in invoice["lines"]["data"])
        invoice.update(
            subtotal=total,
            subtotal_excluding_tax=total,
            total=total,
            total_excluding_tax=total,
            amount_due=max(0, total),
            amount_remaining=max(0, total),
        )
        self._put(invoice)

    def create_invoice(self, params: JSON) -> JSON:
        """Create a draft invoice for a customer (pending items are excluded by default)."""
        customer_id = params.get("customer") or required("customer")
        if isinstance(customer_id, SandboxError):
            raise customer_id
        customer = self.get("customer", customer_id, "customer")
        currency = str(params.get("currency") or customer.get("currency") or "usd").lower()
        method = params.get("collection_method") or "charge_automatically"
        days = _int(params, "days_until_due", 0) or None
        if method == "send_invoice" and days is None:
            raise required("days_until_due")
        invoice = self._new_invoice(
            customer_id,
            currency,
            self.time_for(customer_id),
            "manual",
            collection_method=method,
            days_until_due=days,
            metadata=merge_metadata({}, params.get("metadata")),
            description=params.get("description"),
        )
        if params.get("pending_invoice_items_behavior") == "include":
            for item in list(self.state.store("invoiceitem").added.values()):
                if item and item["invoice"] is None and item["customer"] == customer_id:
                    self._add_line(invoice["id"], item)
        return self.get("invoice", invoice["id"])

    def _finalize(self, invoice_id: str) -> JSON:
        invoice = self.get("invoice", invoice_id)
        if invoice["status"] != "draft":
            raise SandboxError(
                400,
                "invalid_request_error",
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        now = self.time_for(invoice["customer"])
        invoice.update(status="open", number=f"{invoice['id'][-8:].upper()}-0001")
        invoice["status_transitions"]["finalized_at"] = now
        if invoice["amount_due"] == 0:
            invoice.update(status="paid", paid=True)
            invoice["status_transitions"]["paid_at"] = now
        self._put(invoice)
        self.state.emit("invoice.finalized", invoice)
        if invoice["paid"]:
            self.state.emit("invoice.paid", invoice)
        return invoice

    def finalize_invoice(self, invoice_id: str) -> JSON:
        """Finalize a draft invoice (``POST /v1/invoices/{id}/finalize``)."""
        return self._finalize(invoice_id)

    def pay_invoice(self, invoice_id: str, params: JSON) -> JSON:
        """Attempt to pay an open invoice now (``POST /v1/invoices/{id}/pay``)."""
        invoice = self.get("invoice", invoice_id)
        if invoice["status"] == "draft":
            invoice = self._finalize(invoice_id)
        if invoice["status"] == "paid":
            raise SandboxError(
                400,
                "invalid_request_error",
                "Invoice is already paid.",
                code="invoice_already_paid",
            )
        if _bool(params.get("paid_out_of_band")):
            now = self.time_for(invoice["customer"])
            invoice.update(
                status="paid",
                paid=True,
                paid_out_of_band=True,
                amount_paid=invoice["amount_due"],
                amount_remaining=0,
            )
            invoice["status_transitions"]["paid_at"] = now
            self._put(invoice)
            self.state.emit("invoice.paid", invoice)
            return invoice
        paid = self._attempt_payment(invoice_id, params.get("payment_method"))
        if not paid:
            raise SandboxError(
                402,
                "card_error",
                "Your card was declined.",
                code="card_declined",
                extra={"decline_code": "generic_decline"},
            )
        return self.get("invoice", invoice_id)

    def _invoice_for_period(
        self, sub: JSON, start: int, reason: str, usage_period: tuple[int, int] | None = None
    ) -> JSON:
        """Invoice the period from ``start``: licensed items ahead, metered usage in arrears.

        ``usage_period`` is the period that just ended (None on the first invoice, whose
        metered lines bill nothing yet).
        """
        invoice = self._new_invoice(
            sub["customer"], sub["currency"], start, reason, subscription=sub["id"]
        )
        for item in self._items(sub):
            metered = item["quantity"] is None
            period = (start, sub["current_period_end"])
            quantity = item["quantity"]
            if metered:
                period = usage_period or period
                quantity = item.get("usage", 0)
                if usage_period is not None:
                    quantity += self._metered_usage(sub["customer"], item["price"], usage_period)
                item["usage"] = 0
            line = {
                "id": new_id("il_"),
                "object": "line_item",
                "amount": int(item["price"]["unit_amount"]) * int(quantity),
                "currency": sub["currency"],
                "description": f"{quantity} x {item['price']['id']}",
                "discountable": True,
                "livemode": False,
                "metadata": {},
                "period": {"start": period[0], "end": period[1]},
                "price": item["price"],
                "proration": False,
                "quantity": quantity,
                "subscription": sub["id"],
                "subscription_item": item["id"],
                "type": "subscription",
                "discounts": [],
                "tax_amounts": [],
                "tax_rates": [],
            }
            self._append_line(invoice, line)
        self._put(sub)
        invoice = self._finalize(invoice["id"])
        sub = self.get("subscription", sub["id"])
        sub["latest_invoice"] = invoice["id"]
        self._put(sub)
        if invoice["paid"]:
            self._activate(sub["id"])
        return invoice

    def _payment_method(self, customer_id: str, explicit: str | None) -> str | None:
        if explicit:
            return explicit
        customer = self.state.store("customer").get(customer_id) or {}
        method: str | None = (customer.get("invoice_settings") or {}).get("default_payment_method")
        return method

    def _attempt_payment(self, invoice_id: str, payment_method: str | None) -> bool:
        """Charge an open invoice; return True when it is paid."""
        invoice = self.get("invoice", invoice_id)
        if invoice["status"] != "open":
            return bool(invoice["status"] == "paid")
        customer_id = invoice["customer"]
        now = self.time_for(customer_id)
        method = self._payment_method(customer_id, payment_method)
        succeeded = method is not None and method not in DECLINING_METHODS
        intent = self._payment_intent(invoice, method, succeeded, now)
        charge = self._charge(invoice, intent, method, succeeded, now)
        invoice = self.get("invoice", invoice_id)
        invoice.update(
            attempt_count=invoice["attempt_count"] + 1,
            attempted=True,
            charge=charge["id"],
            payment_intent=intent["id"],
        )
        sub = (
            self.state.store("subscription").get(invoice["subscription"])
            if invoice["subscription"]
            else None
        )
        if succeeded:
            invoice.update(
                status="paid",
                paid=True,
                amount_paid=invoice["amount_due"],
                amount_remaining=0,
                next_payment_attempt=None,
            )
            invoice["status_transitions"]["paid_at"] = now
            self._put(invoice)
            self.state.emit("invoice.paid", invoice)
            self.state.emit("invoice.payment_succeeded", invoice)
            if sub is not None:
                self._activate(sub["id"])
            if method in DISPUTING_METHODS:
                self._dispute(charge, now)
            return True
        invoice["next_payment_attempt"] = now + RETRY_AFTER_FAILURE
        self._put(invoice)
        self.state.emit("invoice.payment_failed", invoice)
        if sub is not None and sub["status"] in ("active", "incomplete"):
            sub = copy.deepcopy(sub)
            previous = {"status": sub["status"]}
            sub["status"] = "past_due" if sub["status"] == "active" else "incomplete"
            self._put(sub)
            if sub["status"] != previous["status"]:
                self.state.emit("customer.subscription.updated", sub, previous)
        return False

    def _activate(self, sub_id: str) -> None:
        sub = self.get("subscription", sub_id)
        if sub["status"] in ("incomplete", "past_due"):
            previous = {"status": sub["status"]}
            sub["status"] = "active"
            self._put(sub)
            self.state.emit("customer.subscription.updated", sub, previous)

    def _payment_intent(self, invoice: JSON, method: str | None, ok: bool, now: int) -> JSON:
        intent = {
            "id": new_id("pi_"),
            "object": "payment_intent",
            "created": now,
            "livemode": False,
            "amount": invoice["amount_due"],
            "amount_received": invoice["amount_due"] if ok else 0,
            "currency": invoice["currency"],
            "customer": invoice["customer"],
            "invoice": invoice["id"],
            "capture_method": "automatic",
            "confirmation_method": "automatic",
            "description": None,
            "metadata": {},
            "latest_charge": None,
            "payment_method_types": ["card"],
            "payment_method": method,
            "status": "succeeded" if ok else "requires_payment_method",
            "last_payment_error": None
            if ok
            else {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
            },
            "canceled_at": None,
            "cancellation_reason": None,
        }
        self._put(intent)
        self.state.emit("payment_intent.created", intent)
        return intent

    def _charge(self, invoice: JSON, intent: JSON, method: str | None, ok: bool, now: int) -> JSON:
        charge = {
            "id": new_id("ch_"),
            "object": "charge",
            "created": now,
            "livemode": False,
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if ok else 0,
            "amount_refunded": 0,
            "currency": intent["currency"],
            "customer": invoice["customer"],
            "invoice": invoice["id"],
            "payment_intent": intent["id"],
            "captured": ok,
            "paid": ok,
            "refunded": False,
            "disputed": False,
            "status": "succeeded" if ok else "failed",
            # Stripe often settles the balance transaction after charge.succeeded went out.
            "balance_transaction": None,
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "failure_code": None if ok else "card_declined",
            "failure_message": None if ok else "Your card was declined.",
            "metadata": {},
            "description": None,
            "outcome": None,
            "payment_method": method,
            "receipt_email": None,
            "statement_descriptor": None,
        }
        self._put(charge)
        intent["latest_charge"] = charge["id"]
        self._put(intent)
        if ok:
            self.state.emit("charge.succeeded", charge)
            self.state.emit("payment_intent.succeeded", intent)
            self.pending_settlement.append(charge["id"])
        else:
            self.state.emit("charge.failed", charge)
            self.state.emit("payment_intent.payment_failed", intent)
        return charge

    def _txn(
        self,
        source: str,
        amount: int,
        currency: str,
        kind: str,
        now: int,
        *,
        fee: int = 0,
        category: str,
    ) -> JSON:
        txn = {
            "id": new_id("txn_"),
            "object": "balance_transaction",
            "created": now,
            "livemode": False,
            "amount": amount,
            "currency": currency,
            "fee": fee,
            "fee_details": [
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
            "net": amount - fee,
            "source": source,
            "type": kind,
            "reporting_category": category,
            "status": "pending",
            "available_on": now + 2 * DAY,
            "description": None,
            "exchange_rate": None,
        }
        return self._put(txn)

    def settle_charges(self) -> int:
        """Attach balance transactions (with fees) to charges that lack them; return how many."""
        settled = 0
        while self.pending_settlement:
            charge = self.get("charge", self.pending_settlement.pop(0))
            now = self.time_for(charge["customer"])
            fixed = 0 if charge["currency"] in ZERO_DECIMAL else 30
            fee = round(charge["amount"] * 0.029) + fixed
            txn = self._txn(
                charge["id"],
                charge["amount"],
                charge["currency"],
                "charge",
                now,
                fee=fee,
                category="charge",
            )
            charge["balance_transaction"] = txn["id"]
            self._put(charge)
            self.state.emit("charge.updated", charge, {"balance_transaction": None})
            settled += 1
        return settled

    def _dispute(self, charge: JSON, now: int) -> JSON:
        dispute = {
            "id": new_id("dp_"),
            "object": "dispute",
            "created": now,
            "livemode": False,
            "amount": charge["amount"],
            "currency": charge["currency"],
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "balance_transactions": [],
            "evidence": {},
            "is_charge_refundable": False,
            "metadata": {},
            "evidence_details": {
                "due_by": now + 10 * DAY,
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "reason": "fraudulent",
            "status": "needs_response",
        }
        txn = self._txn(
            dispute["id"],
            -charge["amount"],
            charge["currency"],
            "adjustment",
            now,
            fee=1_500 if charge["currency"] not in ZERO_DECIMAL else 2_000,
            category="dispute",
        )
        dispute["balance_transactions"] = [txn]
        self._put(dispute)
        charge = self.get("charge", charge["id"])
        charge["disputed"] = True
        self._put(charge)
        self.state.emit("charge.dispute.created", dispute)
        self.state.emit("charge.dispute.funds_withdrawn", dispute)
        return dispute

    def _open_dispute(self, dispute_id: str) -> JSON:
        dispute = self.get("dispute", dispute_id)
        if dispute["status"] in ("won", "lost"):
            raise SandboxError(
                400,
                "invalid_request_error",
                f"This dispute is already closed with status {dispute['status']}.",
            )
        return dispute

    def update_dispute(self, dispute_id: str, params: JSON) -> JSON:
        """Stage or submit evidence (``POST /v1/disputes/{id}``), decided by Stripe's test values.

        Submitted evidence (``submit`` defaults to true) whose ``uncategorized_text`` is
        ``winning_evidence`` wins the dispute and reinstates the funds with a
        ``dispute_reversal`` balance transaction; ``losing_evidence`` loses it; any other
        evidence puts it under review. ``submit=false`` only stages the evidence.
        """
        dispute = self._open_dispute(dispute_id)
        previous: JSON = {}
        if "metadata" in params:
            previous["metadata"] = dispute["metadata"]
            dispute["metadata"] = merge_metadata(dispute["metadata"], params["metadata"])
        evidence = params.get("evidence") or {}
        if evidence:
            previous["evidence"] = dict(dispute["evidence"])
            dispute["evidence"] = {**dispute["evidence"], **evidence}
            dispute["evidence_details"]["has_evidence"] = True
        submit = bool(evidence) and str(params.get("submit", "true")).lower() != "false"
        if submit:
            previous["status"] = dispute["status"]
            dispute["evidence_details"]["submission_count"] += 1
            text = dispute["evidence"].get("uncategorized_text")
            dispute["status"] = {"winning_evidence": "won", "losing_evidence": "lost"}.get(
                str(text), "under_review"
            )
        self._put(dispute)
        if previous:
            self.state.emit("charge.dispute.updated", dispute, previous)
        if dispute["status"] == "won":
            self._reinstate(dispute)
        if dispute["status"] in ("won", "lost"):
            self.state.emit("charge.dispute.closed", self.get("dispute", dispute_id))
        return self.get("dispute", dispute_id)

    def _reinstate(self, dispute: JSON) -> None:
        """Give a won dispute's funds back (the dispute fee is not returned)."""
        charge = self.get("charge", dispute["charge"])
        now = self.time_for(charge["customer"])
        txn = self._txn(
            dispute["id"],
            dispute["amount"],
            dispute["currency"],
            "adjustment",
            now,
            category="dispute_reversal",
        )
        dispute["balance_transactions"].append(txn)
        self._put(dispute)
        self.state.emit("charge.dispute.funds_reinstated", dispute)

    def close_dispute(self, dispute_id: str) -> JSON:
        """Accept a dispute as lost (``POST /v1/disputes/{id}/close``)."""
        dispute = self._open_dispute(dispute_id)
        previous = {"status": dispute["status"]}
        dispute["status"] = "lost"
        self._put(dispute)
        self.state.emit("charge.dispute.updated", dispute, previous)
        self.state.emit("charge.dispute.closed", dispute)
        return dispute

    # -- refunds, credit notes, payouts ------------------------------------------------------
    def create_refund(self, params: JSON) -> JSON:
        """Refund all or part of a charge (by ``charge`` or ``payment_intent``)."""
        charge_id = params.get("charge")
        if not charge_id and params.get("payment_intent"):
            intent = self.get("payment_intent", params["payment_intent"], "payment_intent")
            charge_id = intent["latest_charge"]
        if not charge_id:
            raise required("charge")
        charge = self.get("charge", charge_id, "charge")
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        amount = _int(params, "amount", remaining)
        if amount <= 0 or amount > remaining:
            raise SandboxError(
                400,
                "invalid_request_error",
                f"Refund amount ({amount}) is greater than unrefunded amount on "
                f"charge ({remaining})",
                code="amount_too_large",
                param="amount",
            )
        now = self.time_for(charge["customer"])
        refund_id = new_id("re_")
        txn = self._txn(refund_id, -amount, charge["currency"], "refund", now, category="refund")
        refund = {
            "id": refund_id,
            "object": "refund",
            "created": now,
            "amount": amount,
            "currency": charge["currency"],
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "balance_transaction": txn["id"],
            "reason": params.get("reason"),
            "status": "succeeded",
            "metadata": merge_metadata({}, params.get("metadata")),
        }
        self._put(refund)
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        self._put(charge)
        self.state.emit("refund.created", refund)
        self.state.emit("charge.refunded", charge, previous)
        return refund

    def create_credit_note(self, params: JSON) -> JSON:
        """Issue a credit note on a finalized invoice (see :mod:`.settlement`)."""
        from ledgerlink_stripe.sandbox.settlement import Settlement

        return Settlement(self).create_credit_note(params)

    def create_payout(self, params: JSON) -> JSON:
        """Create a manual payout with its balance transaction."""
        amount = _int(params, "amount")
        currency = str(params.get("currency") or "").lower()
        if not currency:
            raise required("currency")
        payout = self.store_payout(
            amount,
            currency,
            automatic=False,
            description=params.get("description"),
            metadata=params.get("metadata"),
            statement_descriptor=params.get("statement_descriptor"),
        )
        self.state.emit("payout.created", payout)
        return payout

    def store_payout(
        self,
        amount: int,
        currency: str,
        *,
        automatic: bool,
        status: str = "pending",
        description: str | None = None,
        metadata: Any = None,
        statement_descriptor: str | None = None,
    ) -> JSON:
        """Store a new payout of ``amount`` with its balance transaction; the caller announces it.

        ``metadata`` is the request's metadata update (see :func:`merge_metadata`). A manual
        payout cannot be reconciled with the balance transactions it paid out; an automatic one
        is ``in_progress`` until it is paid.
        """
        now = self.state.now()
        po_id = new_id("po_")
        txn = self._txn(po_id, -amount, currency, "payout", now, category="payout")
        payout = {
            "id": po_id,
            "object": "payout",
            "created": now,
            "livemode": False,
            "amount": amount,
            "currency": currency,
            "arrival_date": now + 2 * DAY,
            "automatic": automatic,
            "balance_transaction": txn["id"],
            "method": "standard",
            "reconciliation_status": "in_progress" if automatic else "not_applicable",
            "source_type": "card",
            "status": status,
            "type": "bank_account",
            "description": description,
            "metadata": merge_metadata({}, metadata),
            "destination": "ba_sandboxbank0001",
            "failure_code": None,
            "failure_message": None,
            "statement_descriptor": statement_descriptor,
        }
        return self._put(payout)

    # -- test clocks -------------------------------------------------------------------------
    def create_test_clock(self, params: JSON) -> JSON:
        """Create a test clock frozen at ``frozen_time``."""
        frozen = _int(params, "frozen_time")
        now = self.state.now()
        clock = {
            "id": new_id("clock_"),
            "object": "test_helpers.test_clock",
            "created": now,
            "deletes_after": now + 30 * DAY,
            "frozen_time": frozen,
            "livemode": False,
            "name": params.get("name"),
            "status": "ready",
        }
        self._put(clock)
        return clock

    def advance_test_clock(self, clock_id: str, params: JSON) -> JSON:
        """Move a clock forward, running renewals, dunning retries and cancellations."""
        clock = self.get("test_helpers.test_clock", clock_id)
        target = _int(params, "frozen_time")
        if target <= clock["frozen_time"]:
            raise SandboxError(
                400,
                "invalid_request_error",
                "The frozen_time must be after the test clock's current frozen_time.",
                param="frozen_time",
            )
        customers = {
            c["id"]
            for c in self.state.store("customer").added.values()
            if c and c.get("test_clock") == clock_id
        }
        self.settle_charges()
        while True:
            due = self._next_due(customers, target)
            if due is None:
                break
            when, action, object_id = due
            clock["frozen_time"] = when
            self._put(clock)
            if action == "renew":
                self._renew(object_id, when)
            else:
                invoice = self.get("invoice", object_id)
                sub = (
                    self.state.store("subscription").get(invoice["subscription"])
                    if invoice["subscription"]
                    else None
                )
                method = sub.get("default_payment_method") if sub else None
                self._attempt_payment(object_id, method)
            self.settle_charges()
        clock["frozen_time"] = target
        self._put(clock)
        self.state.emit("test_helpers.test_clock.ready", clock)
        return clock

    def _next_due(self, customers: set[str], target: int) -> tuple[int, str, str] | None:
        best: tuple[int, str, str] | None = None
        for sub in self.state.store("subscription").added.values():
            if (
                sub
                and sub["customer"] in customers
                and sub["status"] not in ("canceled", "incomplete_expired")
            ):
                when = sub["current_period_end"]
                if when <= target and (best is None or when < best[0]):
                    best = (when, "renew", sub["id"])
        for invoice in self.state.store("invoice").added.values():
            if (
                invoice
                and invoice["customer"] in customers
                and invoice["status"] == "open"
                and invoice["next_payment_attempt"]
            ):
                when = invoice["next_payment_attempt"]
                if when <= target and (best is None or when < best[0]):
                    best = (when, "retry", invoice["id"])
        return best

    def _renew(self, sub_id: str, when: int) -> None:
        sub = self.get("subscription", sub_id)
        if sub["cancel_at_period_end"]:
            self._end(sub, when)
            return
        previous = {
            "current_period_start": sub["current_period_start"],
            "current_period_end": sub["current_period_end"],
        }
        sub["current_period_start"] = when
        sub["current_period_end"] = _period_end(when, _recurring(sub))
        self._put(sub)
        self.state.emit("customer.subscription.updated", sub, previous)
        # Usage is billed in arrears: the period that just ended.
        usage_period = (previous["current_period_start"], when)
        invoice = self._invoice_for_period(sub, when, "subscription_cycle", usage_period)
        self._attempt_payment(invoice["id"], sub["default_payment_method"])


def _unit(item: JSON) -> int:
    quantity = item["quantity"] if item["quantity"] is not None else 0
    return int(item["price"]["unit_amount"]) * int(quantity)
