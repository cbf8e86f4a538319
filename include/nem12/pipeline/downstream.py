"""The steps of the nem12_daily DAG, downstream of the meter table, free of Airflow.

Each step reads the days the merges changed from its own cursor
(``nem12.warehouse.changes``), so it may run after every Asset event or after
hours of downtime with the same result, and a re-run does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import psycopg

from nem12.pipeline.alert_config import AlertConfig
from nem12.warehouse import alerts, rollup

log = logging.getLogger(__name__)


def refresh_rollups(conn: psycopg.Connection) -> dict[str, int]:
    """Refresh the daily rollup for every day changed since the last refresh."""
    done = rollup.refresh(conn)
    log.info(
        "day_rollup: %d changes taken in %d batches, %d days refreshed, %d removed",
        done.changes,
        done.batches,
        done.days,
        done.removed,
    )
    return asdict(done)


def raise_alerts(conn: psycopg.Connection, config: AlertConfig) -> dict:
    """Raise the alerts of ``config``'s rules for every day changed since the last run
    that the rollup holds (run it after ``refresh_rollups``)."""
    done = alerts.raise_alerts(conn, config.rules, config.version)
    log.info(
        "alerts (config %s): %d changes taken in %d batches, %d raised %s; %d changes wait "
        "for the rollup",
        config.version,
        done.changes,
        done.batches,
        done.raised,
        done.alerts,
        done.waiting,
    )
    return {"config_version": config.version, "raised": done.raised, **asdict(done)}


def send_alerts(
    conn: psycopg.Connection,
    config: AlertConfig,
    origin: str | None = None,
    context: dict | None = None,
    base_url: str | None = None,
) -> dict:
    """Send the alerts not notified yet through their rules' notifiers, one message per
    channel (``nem12.pipeline.notify.send_alerts``); run it after ``raise_alerts``.
    ``base_url``: the api-server's, for the links to the review view."""
    from nem12.pipeline import notify

    return notify.send_alerts(conn, config, origin, context, base_url)
