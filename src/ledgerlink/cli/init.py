"""``ledgerlink init``: write a commented configuration and create the database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from cryptography.fernet import Fernet

from ledgerlink.cli._common import fail, out, state
from ledgerlink.config import config_path_from_env

__all__ = ["EXAMPLE_CONFIG", "init"]

EXAMPLE_CONFIG = """\
# ledgerlink configuration.
#
# Every key can be overridden by an environment variable LEDGERLINK_<SECTION>__<KEY>,
# for example LEDGERLINK_DATABASE__URL or LEDGERLINK_CONNECTORS__STRIPE__API_KEY.
# A secret can be written as "env:VARIABLE" or "file:/path/to/file" instead of its value,
# so that it never sits in this file. Secrets are never logged.

[database]
# Embedded SQLite for one process; PostgreSQL for production and several replicas:
# url = "postgresql+psycopg://ledgerlink@db.internal:5432/ledgerlink"
url = "sqlite:///{db_path}"

[logging]
level = "INFO"       # DEBUG, INFO, WARNING, ERROR
format = "auto"      # auto (console on a terminal, JSON otherwise), json, console

[secrets]
# Fernet key that encrypts stored OAuth tokens at rest. Keep it out of version control.
encryption_key = "file:{key_path}"

[sync]
interval_seconds = 300   # how often the daemon runs a sync cycle
page_size = 1000         # records stored per transaction

# One table per connector; `ledgerlink connectors list` shows what is installed.
#
# [connectors.salesforce]
# instance_url = "https://yourcompany.my.salesforce.com"
# auth = "jwt"
# client_id = "env:SF_CLIENT_ID"
# username = "integration@yourcompany.com"
# private_key = "file:/run/secrets/salesforce.key"
#
# [connectors.stripe]
# api_key = "env:STRIPE_API_KEY"
# webhook_secrets = ["env:STRIPE_WEBHOOK_SECRET"]
#
# [connectors.quickbooks]
# realm_id = "1234567890"
# client_id = "env:QBO_CLIENT_ID"
# client_secret = "env:QBO_CLIENT_SECRET"
"""


def init(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Option(help="Where to put the database and key files.", file_okay=False)
    ] = Path(),
    force: Annotated[bool, typer.Option(help="Overwrite an existing configuration file.")] = False,
) -> None:
    """Write a commented ledgerlink.toml, an encryption key, and create the database.

    Safe to run again: an existing configuration is kept (unless --force) and migrations that
    are already applied are skipped.
    """
    from ledgerlink.config import load_config
    from ledgerlink.store import current_revision, upgrade
    from ledgerlink.store.db import create_engine_for

    st = state(ctx)
    config_path = config_path_from_env(st.config_path)
    directory.mkdir(parents=True, exist_ok=True)
    if config_path.exists() and not force:
        out.print(f"keeping existing {config_path}")
    else:
        key_path = (directory / "ledgerlink.key").resolve()
        if not key_path.exists():
            key_path.write_bytes(Fernet.generate_key() + b"\n")
            os.chmod(key_path, 0o600)
        db_path = (directory / "ledgerlink.db").resolve()
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(
            EXAMPLE_CONFIG.format(db_path=db_path.as_posix(), key_path=key_path.as_posix()),
            encoding="utf-8",
        )
        out.print(f"wrote {config_path}")
    config = load_config(config_path, required=True)
    engine = create_engine_for(config.database.url)
    try:
        upgrade(engine)
        revision = current_revision(engine)
    except Exception as exc:  # noqa: BLE001 - any driver error becomes one clear line
        fail(f"cannot prepare the database: {type(exc).__name__}: {exc}")
    finally:
        engine.dispose()
    out.print(f"database ready (revision {revision})")
