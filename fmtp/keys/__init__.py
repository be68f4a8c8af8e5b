"""
Domain keys and domain signatures.

Every object that crosses domains is signed by its origin domain, and a
domain publishes its public keys in DNS as DKIM does (DESIGN, decision 3).
This package holds:

  - L{fmtp.keys.records}: key records and C{Signature} properties as
    text, parsed and formatted;
  - L{fmtp.keys.signing}: what is signed, how a signature is checked
    against a domain's keys, and L{fmtp.keys.signing.DomainSigner};
  - L{fmtp.keys.keyfile}: this server's private key on disk;
  - L{fmtp.keys.static}: verification against records given up front.

Looking the records up in DNS is L{fmtp.dns.keyverifier}'s job, through
the same L{fmtp.interfaces.IKeyVerifier} interface.
"""
