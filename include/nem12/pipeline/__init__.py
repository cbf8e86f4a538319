"""The pipeline's steps (one function per DAG task), S3 objects, quality reports, metrics
and settings: what the DAGs and the plugin call."""
