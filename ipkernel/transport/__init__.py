"""The transport seam (issue 15): what the ways of carrying calls share.

* :mod:`~ipkernel.transport.link`: one :class:`~ipkernel.transport.link.Link`
  per peer, holding its Foolscap reference, its lane and its data-channel peer,
  and the :class:`~ipkernel.transport.link.CarrierPolicy` that picks, once per
  call and after serialising once, which of them carries it;
* :mod:`~ipkernel.transport.tls`: TLS with a Tub's own Foolscap certificate
  for lanes and the data channel between hosts (the server presents the role's
  certificate, the joining side checks it against the FURL's tub id);
* :mod:`~ipkernel.transport.memtls`: TLS through the standard library's ``ssl``
  on memory buffers, under the lanes' Twisted protocol;
* :mod:`~ipkernel.transport.seal`: AES-256-GCM records on a blocking socket
  after a TLS handshake: how the data channel carries bulk data between
  hosts, at a fraction of ``ssl``'s cost.
"""
