"""JSON bodies for QuickBooks with exact decimal amounts.

Posting helpers build amounts as :class:`~decimal.Decimal`; QuickBooks wants JSON numbers.
A Decimal is written as a number only when its shortest float text is exactly the same value
(true for every amount with up to 15 significant digits), otherwise encoding fails loudly
rather than post a rounded amount.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

__all__ = ["dumps"]


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        as_float = float(value)
        if Decimal(repr(as_float)) != value:
            msg = f"amount {value} cannot be sent exactly as a JSON number"
            raise ValueError(msg)
        return as_float
    msg = f"{type(value).__name__} is not JSON serializable"
    raise TypeError(msg)


def dumps(payload: Any) -> bytes:
    """Encode ``payload`` as compact UTF-8 JSON, Decimals as exact numbers.

    Raises:
        ValueError: a Decimal would lose precision as a JSON number.
    """
    return json.dumps(payload, default=_default, separators=(",", ":"), ensure_ascii=False).encode()
