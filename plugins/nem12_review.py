"""The NEM12 review view in Airflow's UI: a FastAPI app on the api-server, and its views.

Pages and queries live in ``nem12.pipeline.review_web`` and ``nem12.warehouse.review``; this file
only wires them to Airflow: the connections, the reports setting, the menu
entry and the DAG-run tab (rendered inside the UI through ``url_route``).
"""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin


def _connect():
    from airflow.models.connection import Connection

    from nem12.pipeline import connections

    return connections.postgres(
        Connection.get_connection_from_secrets(connections.POSTGRES_CONN_ID)
    )


def _app():
    from nem12.pipeline import connections
    from nem12.pipeline.review_web import create_app
    from nem12.pipeline.settings import Settings

    return create_app(_connect, Settings.from_env().reports_dir, s3=connections.s3)


class Nem12ReviewPlugin(AirflowPlugin):
    name = "nem12_review"
    fastapi_apps: ClassVar[list[dict]] = [
        {"app": _app(), "url_prefix": "/nem12", "name": "NEM12 review"}
    ]
    external_views: ClassVar[list[dict]] = [
        {
            "name": "Meter data review",
            "href": "/nem12/",
            "destination": "nav",
            "url_route": "nem12",
            "category": "browse",
        },
        {
            "name": "Meter data",
            "href": "/nem12/runs/{RUN_ID}",
            "destination": "dag_run",
            "url_route": "nem12-run",
        },
    ]
