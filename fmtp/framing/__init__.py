"""
Frames in, replies out: what every fmtp protocol is built from.

  - L{fmtp.framing.stream} and L{fmtp.framing.datagram}: the stream and
    datagram protocols, which parse, frame, time out, apply back-pressure
    and enforce the datagram rules, and answer every bad input with a
    reply code and a log line, in one place;
  - L{fmtp.framing.handler}: command groups (L{CommandGroup}) and the
    collection of them a protocol is made of (L{HandlerCollection}), plain
    classes that never see a transport;
  - L{fmtp.framing.session}: the state of one connection (L{Session}) and
    the commands every stream protocol shares (CAPA, LOGIN, LOGOUT, QUIT);
  - L{fmtp.framing.plugin}: L{FramedProtocolPlugin}, the base of a
    protocol plugin made of command groups.
"""
