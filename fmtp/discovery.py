"""
Finding the protocol plugins a server may serve, and which it does.

Plugins live in the C{fmtp.plugins} package, which any directory named
C{fmtp/plugins} on C{sys.path} extends (L{twisted.plugin}'s convention;
see doc/plugins.md).  Every module there is imported, each in turn and on
its own, and every object in it that provides both L{IPlugin} and
L{IProtocolPlugin} is a protocol plugin: a module that fails to import is
reported in one line and skipped, and the others are found all the same.
(L{twisted.plugin.getPlugins} logs such a failure as a traceback and
writes cache files next to the modules, which an installed package's
directory may not allow.)

The built-in protocols come first, whatever the order of the search, so
no dropped-in module can take over their names; they are served unless
switched off.  A third-party plugin is served only when the admin enables
it: installing one does not open a port.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.modules import getModule

from fmtp.interfaces import IProtocolPlugin

log = Logger()

_PLUGIN_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


def builtin_plugins() -> dict[str, IProtocolPlugin]:
    """
    The protocols that ship with fmtp, by name.
    """
    from fmtp.plugins import fmtp_builtin

    return {plugin.name: plugin for plugin in fmtp_builtin.BUILTIN_PROTOCOLS}


def _provided(module: object) -> Iterable[IProtocolPlugin]:
    for value in vars(module).values():
        if IPlugin.providedBy(value) and IProtocolPlugin.providedBy(value):
            yield value


def find_protocol_plugins() -> dict[str, IProtocolPlugin]:
    """
    Every protocol plugin installed, by name: the built-ins, then any
    found in the C{fmtp.plugins} package, sorted by name.

    Among third-party plugins the first of a name wins, and the others are
    refused with a log line, as is a name unfit for C{--listen-NAME}.
    """
    import fmtp.plugins

    found = builtin_plugins()
    builtins = set(map(id, found.values()))
    for module in getModule(fmtp.plugins.__name__).iterModules():
        try:
            loaded = module.load()
        except Exception as e:
            log.error(
                "Protocol plugin module {module} cannot be loaded, skipped: {error}",
                module=module.name,
                error=f"{type(e).__name__}: {e}",
            )
            continue
        for plugin in _provided(loaded):
            if id(plugin) in builtins:
                continue
            if not _PLUGIN_NAME.fullmatch(str(getattr(plugin, "name", ""))):
                log.warn(
                    "Ignoring protocol plugin {plugin!r}: its name must be 1 to 32 "
                    "lower-case letters, digits or dashes",
                    plugin=plugin,
                )
            elif plugin.name in found:
                log.warn(
                    "Ignoring protocol plugin {plugin!r}: the name {name} is taken",
                    plugin=plugin,
                    name=plugin.name,
                )
            else:
                found[plugin.name] = plugin
    return dict(sorted(found.items()))


def is_builtin(plugin: IProtocolPlugin) -> bool:
    return any(plugin is builtin for builtin in builtin_plugins().values())
