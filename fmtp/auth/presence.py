"""
Where the protocols other than presence ask what a user may see of
another's presence (L{fmtp.interfaces.IPresenceView}).

The live presence belongs to the presence plugin, which registers its
service here when it is built; the object protocol reads it through this
directory, so neither protocol imports the other (DESIGN decision 16),
and a server without the presence protocol shows no status at all.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from fmtp.interfaces import IPresenceView


@implementer(IPresenceView)
class PresenceDirectory:
    """
    L{IPresenceView} over the view registered, or over nothing (nobody
    sees anybody's presence) until one is.
    """

    def __init__(self) -> None:
        self._view: IPresenceView | None = None

    def register(self, view: IPresenceView) -> None:
        """
        Answer from C{view} from now on (the presence plugin's service; a
        server builds one).
        """
        self._view = view

    def shown_to(self, viewer: str, contact: str) -> Deferred:
        if self._view is None:
            return succeed(None)
        return self._view.shown_to(viewer, contact)
