"""The demo's months of subscription life, played on Stripe's test-clock API.

A cohort of companies that Salesforce knows but Stripe does not yet bill sign up: each becomes a
Stripe customer attached to one test clock (named in its metadata after its Salesforce Account,
as a closed deal would be) with a monthly subscription. Then, month by month, some customers
upgrade, add seats, downgrade or cancel at period end, a few cards decline and are later fixed,
and the clock is advanced so Stripe runs the renewals, prorations, dunning retries and
cancellations itself. It speaks only Stripe's public HTTP API (form bodies, ``Idempotency-Key``
on every POST), so the same script runs against the sandbox or a Stripe test-mode account.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

__all__ = ["StoryError", "StripeStory", "pick_cohort"]

_MONTH = timedelta(days=30)
_DECLINES = "pm_card_chargeCustomerFail"  # Stripe's test card whose charges fail
_PAYS = "pm_card_visa"
_PLANS = ("starter_usd", "pro_usd", "business_usd")


class StoryError(RuntimeError):
    """Stripe refused a step of the story (the message carries Stripe's own)."""


def pick_cohort(
    accounts: Sequence[Mapping[str, Any]], billed: set[str], count: int
) -> list[Mapping[str, Any]]:
    """Return up to ``count`` named Salesforce Accounts whose Id no Stripe customer names.

    Args:
        accounts: Salesforce Account rows (``Id``, ``Name``, ``Website`` ...).
        billed: Account Ids that Stripe customers already name in their metadata.
        count: how many to pick.
    """
    chosen = [a for a in accounts if a.get("Name") and a["Id"] not in billed]
    return chosen[:count]


@dataclass
class _Subscription:
    id: str
    item: str
    customer: str
    plan: str
    quantity: int = 1
    ending: bool = False


@dataclass
class StripeStory:
    """A test clock, its customers and their subscriptions, advanced a month at a time.

    Attributes:
        client: an HTTP client on the Stripe API base (``/v1`` paths), authenticated.
        key_prefix: start of every idempotency key, so a rerun of the same demo replays.
        clock: the test clock's id once :meth:`begin` ran.
        frozen: the clock's time.
        subscriptions: what :meth:`begin` created, in order.
    """

    client: httpx.Client
    key_prefix: str
    clock: str = ""
    frozen: datetime | None = None
    subscriptions: list[_Subscription] = field(default_factory=list)
    prices: dict[str, str] = field(default_factory=dict)

    @classmethod
    def connect(cls, settings: Mapping[str, Any], key_prefix: str) -> StripeStory:
        """Open a client from the Stripe connector's settings (``api_key``, ``api_base``)."""
        client = httpx.Client(
            base_url=str(settings.get("api_base") or "https://api.stripe.com"),
            headers={"Authorization": f"Bearer {settings['api_key']}"},
            timeout=30.0,
        )
        return cls(client=client, key_prefix=key_prefix)

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    def _post(self, path: str, key: str, data: Mapping[str, Any]) -> dict[str, Any]:
        response = self.client.post(
            path, data=dict(data), headers={"Idempotency-Key": f"{self.key_prefix}:{key}"}
        )
        body: dict[str, Any] = response.json()
        if response.is_error:
            error = body.get("error") or {}
            msg = f"POST {path}: {response.status_code} {error.get('message') or response.text}"
            raise StoryError(msg)
        return body

    def _load_prices(self) -> None:
        response = self.client.get("/v1/prices", params={"limit": 100, "active": "true"})
        response.raise_for_status()
        for price in response.json()["data"]:
            if price.get("lookup_key"):
                self.prices[price["lookup_key"]] = price["id"]
        missing = [plan for plan in _PLANS if plan not in self.prices]
        if missing:
            msg = f"Stripe has no price with lookup key {', '.join(missing)}"
            raise LookupError(msg)

    def begin(self, start: datetime, accounts: Sequence[Mapping[str, Any]]) -> int:
        """Create the clock at ``start`` and sign up ``accounts``; return how many signed up.

        Every fifth customer's card declines, so its first invoice stays open and dunning
        begins; the plans rotate over Starter, Pro and Business, one to three seats.
        """
        self._load_prices()
        clock = self._post(
            "/v1/test_helpers/test_clocks",
            "clock",
            {"frozen_time": int(start.timestamp()), "name": "ledgerlink demo"},
        )
        self.clock, self.frozen = clock["id"], start
        for number, account in enumerate(accounts):
            method = _DECLINES if number % 5 == 4 else _PAYS
            customer = self._post(
                "/v1/customers",
                f"customer:{account['Id']}",
                {
                    "name": account["Name"],
                    "test_clock": self.clock,
                    "payment_method": method,
                    "invoice_settings[default_payment_method]": method,
                    "metadata[salesforce_account_id]": account["Id"],
                },
            )
            plan = _PLANS[number % len(_PLANS)]
            quantity = 1 + number % 3
            sub = self._post(
                "/v1/subscriptions",
                f"subscription:{account['Id']}",
                {
                    "customer": customer["id"],
                    "items[0][price]": self.prices[plan],
                    "items[0][quantity]": quantity,
                },
            )
            item = sub["items"]["data"][0]["id"]
            self.subscriptions.append(
                _Subscription(sub["id"], item, customer["id"], plan, quantity)
            )
        return len(self.subscriptions)

    def play_month(self, month: int) -> dict[str, int]:
        """Make month ``month``'s changes, then advance the clock by 30 days.

        Month 1: a quarter of the customers upgrade a plan; month 2: some add seats and a
        sixth cancel at period end; month 3: some downgrade and the declining cards are
        replaced; later months only renew. Stripe then renews, prorates, retries and cancels.

        Returns:
            How many upgrades, seat changes, downgrades, cancellations and card fixes were made.
        """
        done = {"upgrades": 0, "seats": 0, "downgrades": 0, "cancellations": 0, "card fixes": 0}
        for number, sub in enumerate(self.subscriptions):
            key = f"m{month}:{sub.id}"
            if sub.ending:  # Stripe refuses changes to a canceled subscription
                continue
            if month == 1 and number % 4 == 1 and sub.plan != _PLANS[-1]:
                sub.plan = _PLANS[_PLANS.index(sub.plan) + 1]
                self._change(sub, key, price=self.prices[sub.plan])
                done["upgrades"] += 1
            elif month == 2 and number % 6 == 5:
                self._post(f"/v1/subscriptions/{sub.id}", key, {"cancel_at_period_end": "true"})
                sub.ending = True
                done["cancellations"] += 1
            elif month == 2 and number % 3 == 0:
                sub.quantity += 2
                self._change(sub, key, quantity=sub.quantity)
                done["seats"] += 1
            elif month == 3 and number % 7 == 2 and sub.plan != _PLANS[0]:
                sub.plan = _PLANS[_PLANS.index(sub.plan) - 1]
                self._change(sub, key, price=self.prices[sub.plan])
                done["downgrades"] += 1
            if month == 3 and number % 10 == 4:
                self._post(
                    f"/v1/customers/{sub.customer}",
                    key + ":card",
                    {"invoice_settings[default_payment_method]": _PAYS},
                )
                done["card fixes"] += 1
        assert self.frozen is not None
        self.frozen += _MONTH
        self._post(
            f"/v1/test_helpers/test_clocks/{self.clock}/advance",
            f"advance:{month}",
            {"frozen_time": int(self.frozen.timestamp())},
        )
        return done

    def _change(
        self, sub: _Subscription, key: str, *, price: str | None = None, quantity: int | None = None
    ) -> None:
        data: dict[str, Any] = {"items[0][id]": sub.item, "proration_behavior": "create_prorations"}
        if price is not None:
            data["items[0][price]"] = price
        if quantity is not None:
            data["items[0][quantity]"] = quantity
        self._post(f"/v1/subscriptions/{sub.id}", key, data)
