"""
The twistd dropin for fmtp: C{twistd fmtp} builds its service in L{fmtp.tap}.

This module must stay free of fmtp imports so that listing twistd's plugins
stays cheap; L{ServiceMaker} imports L{fmtp.tap} only when fmtp is chosen.
"""

from twisted.application.service import ServiceMaker

fmtpServer = ServiceMaker(
    "fmtp server",
    "fmtp.tap",
    "A federated messaging server: objects, presence and chat rooms.",
    "fmtp",
)
