"""The NEM12 review view in Airflow's UI: a FastAPI app on the api-server, and its views.

Pages and queries live in ``nem12.review_web`` and ``nem12.review``; this file
only wires them to Airflow: the connections, the reports setting, the menu
entry and the DAG-run tab (rendered inside the UI through ``url_route``).
"""

from __future__ import annotations

import os
from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin

POSTGRES_CONN_ID = "nem12_postgres"
S3_CONN_ID = "nem12_s3"


def _connect():
    import psycopg
    from airflow.models.connection import Connection

    conn = Connection.get_connection_from_secrets(POSTGRES_CONN_ID)
    params = {
        "host": conn.host,
        "port": conn.port,
        "dbname": conn.schema,
        "user": conn.login,
        "password": conn.password,
    }
    return psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True)


def _s3():
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=S3_CONN_ID).get_conn()


def _app():
    from nem12.review_web import create_app

    return create_app(_connect, os.environ.get("NEM12_REPORTS_DIR", "reports"), s3=_s3)


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
