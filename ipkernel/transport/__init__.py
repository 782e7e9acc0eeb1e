"""The transport seam (issue 15): what the ways of carrying calls share.

So far: :mod:`~ipkernel.transport.tls`, TLS with a Tub's own Foolscap
certificate for lanes between hosts (the server presents the role's
certificate, the joining side checks it against the FURL's tub id, as the
data channel does).
"""
