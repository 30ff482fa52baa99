"""Entities: whose features the store serves.

Join keys are the ids the transactions carry (``card_id``, ``terminal_id``), as strings.
"""

from feast import Entity, ValueType

from app.feast_env import join_key

card = Entity(
    name="card",
    join_keys=[join_key("card")],
    value_type=ValueType.STRING,
    description="A payment card (the `card_id` of a transaction).",
)

terminal = Entity(
    name="terminal",
    join_keys=[join_key("terminal")],
    value_type=ValueType.STRING,
    description="A payment terminal (the `terminal_id` of a transaction).",
)
