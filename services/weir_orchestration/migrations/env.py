from weir_kit.migrations import run_env
from weir_orchestration.models import metadata

run_env(metadata)
