"""docker-compose.yaml stays consistent with the tested path (it cannot run here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from nem12.devtools.services import LocalServices

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yaml").read_text())


def test_services_for_the_celery_deployment():
    assert {
        "postgres",
        "redis",
        "minio",
        "minio-init",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "statsd-exporter",
    } <= set(COMPOSE["services"])
    env = COMPOSE["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_same_connection_and_variable_names_as_make_demo():
    compose_env = COMPOSE["x-airflow-common"]["environment"]
    local = LocalServices("dsn", "/tmp", "http://127.0.0.1:1", "nem12").airflow_env()
    assert set(local) <= set(compose_env)
    with_defaults = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", compose_env["AIRFLOW_CONN_NEM12_S3"])
    s3 = json.loads(with_defaults)
    assert s3["conn_type"] == "aws" and "endpoint_url" in s3["extra"]


def test_pools_created_at_init_match_the_dags():
    init = COMPOSE["services"]["airflow-init"]["command"]
    assert "pools set nem12_load" in init and "pools set nem12_merge 1" in init


def test_airflow_sends_statsd_metrics_to_the_exporter():
    env = COMPOSE["x-airflow-common"]["environment"]
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True"
    exporter = COMPOSE["services"][env["AIRFLOW__METRICS__STATSD_HOST"]]
    assert exporter["image"].startswith("prom/statsd-exporter:")
    assert f"--statsd.listen-udp=:{env['AIRFLOW__METRICS__STATSD_PORT']}" in exporter["command"]
    assert env["AIRFLOW__METRICS__STATSD_PREFIX"] == "airflow"
    # Airflow's StatsD backend needs the statsd client, or it falls back to sending nothing
    assert "statsd==" in (Path(__file__).parents[2] / "requirements.txt").read_text()


def test_the_minio_bucket_is_versioned_so_deletes_go_by_version_id():
    init = COMPOSE["services"]["minio-init"]["entrypoint"]
    assert "mc version enable local/nem12" in init
    assert "--noncurrent-expire-days" in init  # versions the pipeline is done with expire


def test_the_celery_cluster_is_the_one_make_cluster_runs():
    from nem12.devtools.cluster import COMPONENTS, WORKER_COMMAND

    env = COMPOSE["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert {"AIRFLOW__CORE__PARALLELISM", "AIRFLOW__CELERY__WORKER_CONCURRENCY"} <= set(env)
    services = COMPOSE["services"]
    commands = {services[name]["command"] for name in services if name.startswith("airflow-")}
    assert set(COMPONENTS) | {" ".join(WORKER_COMMAND)} <= commands
    assert services["airflow-worker"]["command"] == " ".join(WORKER_COMMAND)
