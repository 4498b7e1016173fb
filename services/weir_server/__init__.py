"""The host: runs Weir services in a process (``weir server start``,
``weir service NAME``, no-server mode). The only module that imports the
services; they never import it back."""

from weir_server.stack import Stack
from weir_server.thread import StackThread

__all__ = ["Stack", "StackThread"]
