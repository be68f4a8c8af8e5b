"""
fmtp: a federated messaging server on Twisted.
"""

#: The version of this checkout; setup.cfg reads it from here.
__version__ = "0.1.0"
