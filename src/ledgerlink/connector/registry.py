"""Finding connectors: the ``ledgerlink.connectors`` entry-point group, and nothing else.

The core imports no connector by name. Any installed distribution that declares::

    [project.entry-points."ledgerlink.connectors"]
    hubspot = "ledgerlink_hubspot:plugin"

is listed by ``ledgerlink connectors list`` and usable in the configuration. A plugin that
fails to load is reported with its error instead of breaking the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from ledgerlink.connector.errors import ConfigurationError
from ledgerlink.connector.protocol import ConnectorPlugin

__all__ = ["ENTRY_POINT_GROUP", "LoadedConnector", "discover", "load_plugin"]

ENTRY_POINT_GROUP = "ledgerlink.connectors"


@dataclass(frozen=True)
class LoadedConnector:
    """One entry point of the group: its plugin, or the reason it could not be loaded."""

    name: str
    distribution: str
    distribution_version: str
    plugin: ConnectorPlugin | None
    error: str | None = None


def _load(entry: EntryPoint) -> LoadedConnector:
    dist = entry.dist
    dist_name = dist.name if dist is not None else "?"
    dist_version = dist.version if dist is not None else "?"
    try:
        obj = entry.load()
        plugin = obj() if isinstance(obj, type) else obj
    except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not stop the hub
        return LoadedConnector(
            entry.name, dist_name, dist_version, None, f"{type(exc).__name__}: {exc}"
        )
    if not isinstance(plugin, ConnectorPlugin):
        return LoadedConnector(
            entry.name,
            dist_name,
            dist_version,
            None,
            "entry point does not provide a ledgerlink ConnectorPlugin",
        )
    return LoadedConnector(entry.name, dist_name, dist_version, plugin)


def discover() -> dict[str, LoadedConnector]:
    """Load every connector of the entry-point group, keyed by entry-point name (sorted)."""
    found = {ep.name: _load(ep) for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return dict(sorted(found.items()))


def load_plugin(name: str) -> ConnectorPlugin:
    """Return the plugin registered as ``name``.

    Raises:
        ConfigurationError: no such connector is installed, or it failed to load.
    """
    found = discover()
    loaded = found.get(name)
    if loaded is None:
        known = ", ".join(found) or "none"
        msg = f"unknown connector {name!r} (installed: {known})"
        raise ConfigurationError(msg)
    if loaded.plugin is None:
        msg = f"connector {name!r} failed to load: {loaded.error}"
        raise ConfigurationError(msg)
    return loaded.plugin
