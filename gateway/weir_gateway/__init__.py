"""The REST front of Weir: FastAPI routes mapped onto the SDK's gRPC client.

``create_app(api_address="127.0.0.1:4270")`` gives an ASGI app; serve it with
uvicorn. Every route goes through :class:`weir.client.AsyncWeirClient`: the
gateway owns no data and touches no database.
"""

from weir_gateway.app import create_app

__all__ = ["create_app"]
