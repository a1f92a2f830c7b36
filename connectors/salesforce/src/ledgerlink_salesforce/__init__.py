"""ledgerlink's Salesforce connector: REST and Bulk 2.0 pull, batched upsert, loopback sandbox.

The entry point ``ledgerlink.connectors: salesforce`` names :data:`plugin`.
"""

from __future__ import annotations

from ledgerlink_salesforce.connector import SalesforceConnector
from ledgerlink_salesforce.plugin import SalesforcePlugin
from ledgerlink_salesforce.settings import SalesforceSettings

__all__ = ["SalesforceConnector", "SalesforcePlugin", "SalesforceSettings", "plugin"]

plugin = SalesforcePlugin()
