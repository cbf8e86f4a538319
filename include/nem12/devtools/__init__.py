"""Development tools apart from the runtime layers: the demo, local services, the Airflow
cluster harness and the synthetic file generator. No runtime module imports them."""
