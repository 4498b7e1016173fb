from weir_events.models import metadata
from weir_kit.migrations import run_env

run_env(metadata)
