"""Kafka security settings mapped onto Faust credentials and aiokafka keyword arguments.

PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL; SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512;
CA / client certificate / key paths. The same settings serve the Faust worker
(:func:`faust_credentials`) and the plain aiokafka clients of the CLI (:func:`aiokafka_kwargs`).
"""

from __future__ import annotations

import ssl
from typing import Any

from config.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A TLS context for SSL / SASL_SSL (None for the plaintext protocols)."""
    broker = settings.broker
    if not broker.security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(
        cafile=str(broker.ssl_cafile) if broker.ssl_cafile else None
    )
    if broker.ssl_certfile and broker.ssl_keyfile:
        password = broker.ssl_key_password
        context.load_cert_chain(
            str(broker.ssl_certfile), str(broker.ssl_keyfile),
            password=password.get_secret_value() if password else None,
        )
    return context


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for ``faust.App`` (None for PLAINTEXT)."""
    import faust

    broker = settings.broker
    protocol = broker.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    password = broker.sasl_password
    return faust.SASLCredentials(
        username=broker.sasl_username,
        password=password.get_secret_value() if password else None,
        ssl_context=context,
        mechanism=broker.sasl_mechanism,
    )


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for ``AIOKafkaProducer`` / ``AIOKafkaConsumer``.

    >>> from config.settings import load_settings
    >>> aiokafka_kwargs(load_settings())
    {'security_protocol': 'PLAINTEXT'}
    """
    broker = settings.broker
    kwargs: dict[str, Any] = {"security_protocol": broker.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if broker.security_protocol.startswith("SASL_"):
        password = broker.sasl_password
        kwargs.update(
            sasl_mechanism=broker.sasl_mechanism,
            sasl_plain_username=broker.sasl_username,
            sasl_plain_password=password.get_secret_value() if password else None,
        )
    return kwargs
