"""
The drop-in package for fmtp protocols, searched with L{twisted.plugin}.

Any directory named C{fmtp/plugins} on C{sys.path} is part of this package,
so a hobbyist's protocol installs as a module there without touching fmtp;
see doc/plugins.md.  The built-in protocols are registered here the same
way.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # noqa: F821
__all__: list[str] = []
