"""Workers: daemons that run deployments' flow runs as the server assigns them.

``weir worker start --pool NAME`` runs a :class:`ProcessWorker`;
``Flow.serve`` runs one in-process for a single deployment
(:func:`weir.workers.serve.serve_flow`). Nothing here is loaded by
``import weir``.
"""

from weir.workers.worker import ProcessWorker, default_worker_name, worker_env_for

__all__ = ["ProcessWorker", "default_worker_name", "worker_env_for"]
