"""Create a process work pool and a deployment of dep_flow on it.

    python deploy_worker_setup.py <pool> <deployment-name>

Weir twin of ../shared/bench/prefect_workloads/deploy_worker_setup.py. The
deployment's entrypoint is deploy_serve.py:dep_flow in this directory (its
working directory), so a `weir worker start --pool <pool>` on this machine
can run it. Needs WEIR_API_ADDRESS.
"""

import json
import sys
from pathlib import Path

from weir.client import WeirClient
from weir.errors import NotFound

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from deploy_serve import dep_flow  # noqa: E402

pool, name = sys.argv[1], sys.argv[2]
with WeirClient() as c:
    try:
        c.read_work_pool(pool)
    except NotFound:
        c.upsert_work_pool(pool, type="process")  # = `weir work-pool create <pool> --type process`

dep = dep_flow.deploy(name, work_pool_name=pool, working_directory=str(HERE))
print("RESULT " + json.dumps({"deployment_id": dep.id, "entrypoint": dep.entrypoint}), flush=True)
