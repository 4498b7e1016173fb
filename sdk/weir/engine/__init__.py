"""The run engine behind ``@flow`` and ``@task`` (internal)."""
