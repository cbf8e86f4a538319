"""Manual backfill: re-ingest objects chosen by prefix, glob and arrival dates."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from airflow.sdk import Param, dag, get_current_context, task
from nem12_common import DEFAULT_ARGS, our_process, pipeline, postgres, s3, settings


@dag(
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["nem12", "meter-data", "backfill"],
    doc_md=__doc__,
    params={
        "prefix": Param("landing/", type="string", description="S3 key prefix to look under"),
        "glob": Param("*", type="string", description="file-name pattern, e.g. NEM12#*.zip"),
        "arrived_from": Param(
            None,
            type=["null", "string"],
            format="date",
            description="first arrival date (S3 LastModified), inclusive",
        ),
        "arrived_to": Param(
            None, type=["null", "string"], format="date", description="last arrival date, inclusive"
        ),
        "reprocess": Param(
            False, type="boolean", description="parse files again even if loaded before"
        ),
        "dry_run": Param(
            False, type="boolean", description="validate and report only; load nothing"
        ),
    },
)
def nem12_backfill() -> None:
    @task
    def select() -> list[dict]:
        """The objects matching the form, finished ones too when reprocessing."""
        our_process()
        from nem12.pipeline import steps

        params = get_current_context()["params"]
        with postgres() as conn:
            steps.prepare(conn)  # a backfill may be a deployment's first run
            chosen = steps.select_objects(
                s3(),
                conn,
                settings(),
                prefix=params["prefix"],
                pattern=params["glob"],
                arrived_from=params["arrived_from"],
                arrived_to=params["arrived_to"],
                include_finished=params["reprocess"],
            )
        return [asdict(o) for o in chosen]

    pipeline(select())


nem12_backfill()
