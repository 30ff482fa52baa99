"""The bottom layer's records: what travels on the topics, and why a record is refused.

:mod:`contracts.transactions` holds the transaction and label contracts and their validation
at the edge; :mod:`contracts.rejections` the dead-letter reasons. Nothing here imports the rest
of the project. See docs/architecture.md ("Topics and contracts").
"""
