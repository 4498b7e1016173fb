"""Tables of the deployments service.

Only the transactional outbox so far: the domain tables arrive with the
issue that builds this service (see docs/architecture.md, "Scaffolding").
"""

from sqlalchemy import MetaData

from weir_kit.outbox import outbox_table

metadata = MetaData()
outbox = outbox_table(metadata)
