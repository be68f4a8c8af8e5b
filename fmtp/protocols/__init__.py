"""
fmtp's protocols: the shared framing layer and the built-in protocols.
"""
