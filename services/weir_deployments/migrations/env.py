from weir_deployments.models import metadata
from weir_kit.migrations import run_env

run_env(metadata)
