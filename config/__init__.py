"""The bottom layer: settings (sections by concern), Kafka/Redis security, endpoints, topics.

Nothing here imports the rest of the project; every other layer may import it. See
docs/architecture.md ("Layers").
"""
