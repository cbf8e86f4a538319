"""The MDFF format: specification facts, the rule catalogue, reading bytes and parsing.

Knows nothing of databases, S3 or Airflow.
"""
