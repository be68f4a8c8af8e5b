"""
Server-to-server federation: the handshake, links, delivery and its queue.
"""
