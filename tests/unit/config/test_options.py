"""Option value parsers of the accept- and connect-option tables."""

from __future__ import annotations

import pytest

from kgateway.config.options import parse_networks, parse_proxy_mode


def test_option_parsers() -> None:
    assert parse_proxy_mode(" V2 ") == "v2"
    with pytest.raises(ValueError):
        parse_proxy_mode("v3")
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/8, not-a-net")


# -- the wrapper on a listening socket ---------------------------------------------------------
