"""The gateway-config: its model and its loader. It imports protocols and auth (the
login-module settings) only.

    xmltree.py   defusedxml SAX -> Element tree with line numbers
    values.py    durations, sizes, booleans, counts, URI, bind addresses, -D overrides
    options.py   ACCEPT_OPTIONS / CONNECT_OPTIONS with their parsers; Options
    model.py     Problem, ConfigError and the frozen model (GatewayConfig, ServiceConfig...)
    loader.py    properties, ${} substitution, <security>, <service>: load()
    checks.py    rules across services (ports, TLS, PROXY protocol, Shield)

Nothing here imports transport, services or anything above: the service types are passed
to :func:`load` (``kgateway.services.load_config`` does that for callers).
"""

from kgateway.config.loader import PathResolver, ServiceTypeChecks, env_name, load
from kgateway.config.model import (
    ConfigError,
    CrossSiteConstraint,
    GatewayConfig,
    Problem,
    Properties,
    Property,
    Security,
    ServiceConfig,
)
from kgateway.config.options import ACCEPT_OPTIONS, CONNECT_OPTIONS, Options, bind_address
from kgateway.config.values import (
    URI,
    format_hostport,
    parse_bind,
    parse_bool,
    parse_count,
    parse_define,
    parse_duration,
    parse_positive_int,
    parse_size,
    parse_uri,
)

__all__ = [
    "ACCEPT_OPTIONS", "CONNECT_OPTIONS", "ConfigError", "CrossSiteConstraint", "GatewayConfig",
    "Options", "PathResolver", "Problem", "Properties", "Property", "Security",
    "ServiceConfig", "ServiceTypeChecks", "URI", "bind_address", "env_name", "format_hostport",
    "load", "parse_bind", "parse_bool", "parse_count", "parse_define", "parse_duration",
    "parse_positive_int", "parse_size", "parse_uri",
]
