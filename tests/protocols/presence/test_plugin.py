"""
The presence plugin: registered as a built-in, served over streams and
(for the ISP bridges' PUBLISH) datagrams, and tuned by the server's
options.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface.verify import verifyObject

from fmtp.discovery import builtin_plugins, is_builtin
from fmtp.interfaces import IProtocolPlugin
from fmtp.protocols.presence.bridgelimits import BridgeSourceLimiter
from fmtp.protocols.presence.plugin import PresenceProtocolPlugin
from fmtp.protocols.presence.service import DEFAULT_SETTINGS, PresenceSettings
from fmtp.serveroptions import Options
from tests.helpers import make_services


def test_a_builtin_on_port_7071_over_streams_and_datagrams() -> None:
    plugin = builtin_plugins()["presence"]
    assert is_builtin(plugin)
    assert verifyObject(IPlugin, plugin) and verifyObject(IProtocolPlugin, plugin)
    assert plugin.default_listeners == (
        "tcp:7071:interface=127.0.0.1",
        "udp:7071:interface=127.0.0.1",
    )
    services = make_services(Clock())
    listener = plugin.datagram_protocol(services)
    assert listener is not None
    assert listener.handler.datagram_commands == {"CAPA", "PUBLISH"}
    assert isinstance(listener.limiter, BridgeSourceLimiter)


def presence_of(plugin: PresenceProtocolPlugin, services) -> PresenceSettings:
    return plugin.handler(services).groups[1].presence.settings


def test_settings_come_from_the_servers_options(tmp_path) -> None:
    options = Options()
    options.parseOptions(
        [
            "--data-dir",
            str(tmp_path),
            "--presence-grace",
            "2.5",
            "--presence-max-pending",
            "7",
            "--presence-request-days",
            "3",
            "--presence-remote-refresh",
            "5",
            "--presence-remote-timeout",
            "12.5",
            "--presence-remote-max-pending",
            "50",
        ]
    )
    chosen = options["plugin-options"]["presence"]
    assert (chosen.grace_period, chosen.max_pending) == (2.5, 7)
    assert chosen.request_lifetime == 3 * 86400
    assert (chosen.remote_refresh, chosen.remote_timeout) == (5.0, 12.5)
    assert chosen.remote_max_pending == 50
    services = make_services(Clock(), plugin_options={"presence": chosen})
    assert presence_of(PresenceProtocolPlugin(), services) == chosen
    # Without options, the defaults; a plugin given settings keeps its own.
    assert presence_of(PresenceProtocolPlugin(), make_services(Clock())) == (
        DEFAULT_SETTINGS
    )
    own = PresenceSettings(grace_period=1.0)
    other = make_services(Clock(), plugin_options={"presence": chosen})
    assert presence_of(PresenceProtocolPlugin(own), other) == own


@pytest.mark.parametrize(
    "option, value",
    [
        ("--presence-grace", "-1"),
        ("--presence-grace", "3601"),
        ("--presence-grace", "soon"),
        ("--presence-grace", "nan"),
        ("--presence-max-pending", "0"),
        ("--presence-max-pending", "1e3"),
        ("--presence-request-days", "0"),
        ("--presence-remote-refresh", "0.5"),
        ("--presence-remote-refresh", "later"),
        ("--presence-remote-timeout", "100"),
        ("--presence-remote-max-pending", "0"),
        ("--presence-request-days", "3651"),
        ("--presence-request-days", "1.5"),
    ],
)
def test_bad_options_are_refused(tmp_path, option: str, value: str) -> None:
    with pytest.raises(usage.UsageError, match=option):
        Options().parseOptions(["--data-dir", str(tmp_path), option, value])
