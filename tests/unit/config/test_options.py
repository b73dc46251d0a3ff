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


def test_http_proxy_is_a_plain_http_url_without_credentials() -> None:
    from kgateway.config.options import parse_http_proxy

    assert parse_http_proxy("http://proxy.corp:3128") == ("proxy.corp", 3128)
    assert parse_http_proxy(" http://proxy.corp/ ") == ("proxy.corp", 80)
    assert parse_http_proxy("http://[::1]:3128") == ("::1", 3128)
    for bad in ("proxy:3128", "https://proxy:3128", "http://proxy:99999", "http://:3128",
                "http://proxy:3128/path"):
        with pytest.raises(ValueError, match="http://host:port"):
            parse_http_proxy(bad)
    with pytest.raises(ValueError, match="credentials.file") as e:
        parse_http_proxy("http://kgw:secret@proxy:3128")
    assert "secret" not in str(e.value)
