"""Weir: a workflow orchestrator for Python.

The client lives in ``weir.client``, errors in ``weir.errors``; ``import weir``
itself stays light (no services, databases or web framework are loaded).
"""

from weir.errors import WeirError

__version__ = "0.1.0"

__all__ = ["WeirError", "__version__"]
