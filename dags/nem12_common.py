"""What the nem12 DAGs share: connections, pools, the asset, and the task chain.

Task bodies are calls into the pipeline layer (``nem12.pipeline``); heavy imports stay
inside them so that parsing this file costs milliseconds.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, get_current_context, task

from nem12.pipeline.settings import Settings

POSTGRES_CONN_ID = "nem12_postgres"  # as nem12.pipeline.connections names them (not
S3_CONN_ID = "nem12_s3"  # imported here: it would import psycopg at parse time)
LOAD_POOL = "nem12_load"
MERGE_POOL = "nem12_merge"
METER_READING = Asset(name="nem12_meter_reading", uri="nem12://meter_reading")


#: How often the hourly sensor looks for new objects, and when it gives the hour up
#: (``nem12.pipeline.settings`` reads only the environment: cheap at parse time).
_SETTINGS = Settings.from_env()
SENSE_POKE_SECONDS = _SETTINGS.sense_poke_seconds
SENSE_TIMEOUT_SECONDS = _SETTINGS.sense_timeout_seconds

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "meter-data",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def our_process() -> None:
    """A task body's first call: this process is ours, so the allocator settings apply
    (before anything imports Polars)."""
    from nem12.pipeline import allocator

    allocator.use_in_task()


def postgres():
    """A psycopg connection from the Airflow connection ``nem12_postgres``."""
    from airflow.sdk import Connection

    from nem12.pipeline import connections

    return connections.postgres(Connection.get(POSTGRES_CONN_ID))


def s3():
    """A boto3 S3 client from the Airflow connection ``nem12_s3``."""
    from nem12.pipeline import connections

    return connections.s3()


def settings() -> Settings:
    return Settings.from_env()


def alert_config():
    """The alert config: the Variable ``nem12_alert_config`` when set, else the
    ``NEM12_ALERT_CONFIG`` file."""
    from airflow.sdk import Variable

    from nem12.pipeline import alert_config as config

    return config.load_config(settings(), Variable.get(config.VARIABLE, default=None))


def review_base_url() -> str | None:
    """The api-server's address, for the review view's links in notifications:
    Airflow's ``[api] base_url`` (unset: links relative to the server)."""
    from airflow.sdk.configuration import conf

    return conf.get("api", "base_url", fallback=None) or None


def _param(name: str) -> bool:
    """A run's param (backfill form); the scheduled DAG has none and gets False."""
    return bool(get_current_context()["params"].get(name, False))


def _touched(conn, file_ids: list[int]) -> None:
    """Note in the ledger that this run's task worked on these files (review view)."""
    from nem12.pipeline import steps

    context = get_current_context()
    steps.record_runs(
        conn, file_ids, context["dag"].dag_id, context["run_id"], context["task"].task_id
    )


@task
def register(objects: list[dict]) -> list[dict]:
    """Ledger rows and held copies; on a dry run only what they would be (nothing written)."""
    our_process()
    from nem12.pipeline import metrics, steps, storage

    stored = [storage.StoredObject(**o) for o in objects]
    with postgres() as conn:
        steps.prepare(conn)
        if _param("dry_run"):
            return [asdict(f) for f in steps.preview(s3(), conn, settings(), stored)]
        files = steps.register(s3(), conn, settings(), stored, reprocess=_param("reprocess"))
        _touched(conn, [f.file_id for f in files])
    metrics.files_registered(files)
    return [asdict(f) for f in files if not f.retired]


@task
def validate(files: list[dict]) -> dict:
    """Structure rules and the suites; with nothing left to do, this and every later
    task are skipped (no merge, no Asset event)."""
    our_process()
    from nem12.pipeline import metrics, steps

    if not files:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("nothing to validate: every object was finished with")

    run_name = get_current_context()["run_id"].replace(":", "_").replace("+", "_")
    with postgres() as conn:
        outcome = steps.validate(
            s3(),
            conn,
            settings(),
            [steps.Registered(**f) for f in files],
            run_name,
            dry_run=_param("dry_run"),
        )
        _touched(conn, [f.file_id for f in (*outcome.accepted, *outcome.rejected)])
    metrics.files_validated(outcome)
    if outcome.staged:
        metrics.readings_staged(outcome.staged)
    return {
        "accepted": [asdict(f) for f in outcome.accepted],
        "staged": list(outcome.staged),
        "rejected": [asdict(f) for f in outcome.rejected],
        "duplicates": [f for f in files if f["status"] == "duplicate"],
        "report_location": outcome.report_location,
    }


@task
def plan_loads(validation: dict) -> list[list[dict]]:
    """Groups of accepted files validation did not stage, one per mapped load task
    (none on a dry run)."""
    our_process()
    from nem12.pipeline import steps

    if _param("dry_run"):
        return []
    staged = set(validation["staged"])
    accepted = [steps.Registered(**f) for f in validation["accepted"] if f["file_id"] not in staged]
    return [[asdict(f) for f in group] for group in steps.loading_groups(accepted, settings())]


#: A mapped load's label in the grid: its group's first key and how many files it holds.
GROUP_LABEL = (
    "{{ task.op_kwargs['group'][0]['key'] }}"
    "{% if task.op_kwargs['group'] | length > 1 %}"
    " + {{ task.op_kwargs['group'] | length - 1 }} more{% endif %}"
    " ({{ task.op_kwargs['group'] | length }} files)"
)


@task(pool=LOAD_POOL, map_index_template=GROUP_LABEL)
def parse_and_load(group: list[dict]) -> dict[str, int]:
    our_process()
    from nem12.pipeline import metrics, steps

    with postgres() as conn:
        staged = steps.load_group(s3(), conn, settings(), [steps.Registered(**f) for f in group])
        _touched(conn, list(staged))
    metrics.readings_staged(staged)
    return {str(k): v for k, v in staged.items()}


@task(pool=MERGE_POOL, trigger_rule="none_failed_min_one_success")
def merge(validation: dict, loaded: list[dict[str, int]] | None = None) -> dict:
    """One merge at a time (single-slot pool and an advisory lock); a dry run moves nothing."""
    our_process()
    from nem12.pipeline import metrics, steps

    if _param("dry_run"):
        return {
            "dry_run": True,
            "accepted": len(validation["accepted"]),
            "rejected": len(validation["rejected"]),
            "duplicates": len(validation["duplicates"]),
            "report_location": validation["report_location"],
        }
    file_ids = sorted({int(k) for part in (loaded or []) for k in part} | set(validation["staged"]))
    duplicates = [steps.Registered(**f) for f in validation["duplicates"]]
    with postgres() as conn, metrics.merge_timer():
        counts = steps.merge(s3(), conn, settings(), file_ids, also_archive=duplicates)
        _touched(conn, file_ids + [f.file_id for f in duplicates])
    metrics.readings_merged(counts)
    return {
        "files": len(file_ids),
        "inserted": counts.inserted,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
        "superseded": counts.superseded,
        "rejected": len(validation["rejected"]),
        "duplicates": len(duplicates),
        "report_location": validation["report_location"],
    }


@task(outlets=[METER_READING], trigger_rule="none_failed_min_one_success")
def publish(counts: dict) -> dict:
    """Tell downstream DAGs the meter-reading table changed, and by how much."""
    our_process()
    if counts.get("dry_run"):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("dry run: the meter table did not change")
    get_current_context()["outlet_events"][METER_READING].extra = counts
    return counts


@task(trigger_rule="all_done")
def notify_run() -> dict:
    """The run's summary (its files by status, readings by outcome, each rejected or
    partial file's first findings and review link) to the config's ``notify.runs``,
    once per channel. It runs whatever became of the tasks before it, from what the
    ledger says of the run's files, so rejected files or a failed load never stop
    it; a channel that cannot take it fails this task, the load stays done. A run
    that touched no file (or a dry run) sends nothing: skipped."""
    our_process()
    from airflow.sdk.exceptions import AirflowSkipException

    from nem12.pipeline import notify, steps

    if _param("dry_run"):
        raise AirflowSkipException("dry run: nothing was loaded, nothing to tell")
    context = get_current_context()
    with postgres() as conn:
        steps.prepare(conn)
        done = notify.notify_run(
            conn,
            alert_config(),
            context["dag"].dag_id,
            context["run_id"],
            notify.ReviewLinks(review_base_url(), settings().reports_dir),
            context,
        )
    if done is None:
        raise AirflowSkipException("the run touched no file: nothing to tell")
    return done


def pipeline(objects) -> None:
    """register -> validate -> parse_and_load (mapped) -> merge -> publish, then
    notify_run whatever became of them."""
    checked = validate(register(objects))
    loaded = parse_and_load.expand(group=plan_loads(checked))
    publish(merge(checked, loaded)) >> notify_run()
