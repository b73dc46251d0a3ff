"""The service table: each ``<type>`` of ``<service>`` maps to its module's ServiceType.
Services import downward only (config, transport, jms, amqp, balancer...).

    SERVICE_TYPES["proxy"] = proxy.SERVICE_TYPE   (schemes, check(), build())

Adding a service type means adding one module (with PROPERTIES, its service class and
SERVICE_TYPE; shared pieces in ``base.py``) and one line here. ``load_config`` is how
callers load a configuration: the loader never imports this table, it is given it.
"""

from __future__ import annotations

from collections.abc import Mapping

from kgateway.config import GatewayConfig, load
from kgateway.services import amqp, directory, echo, health, jms, metrics, proxy, status
from kgateway.services.base import ServiceType

SERVICE_TYPES: Mapping[str, ServiceType] = {
    t.name: t for t in (echo.SERVICE_TYPE, directory.SERVICE_TYPE, proxy.SERVICE_TYPE,
                        amqp.SERVICE_TYPE, health.SERVICE_TYPE, jms.SERVICE_TYPE,
                        metrics.SERVICE_TYPE, status.SERVICE_TYPE)
}


def load_config(path: str, overrides: Mapping[str, str] | None = None,
                environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Load and validate *path* with every service type of the table (see config.load)."""
    return load(path, overrides, environ, SERVICE_TYPES)
