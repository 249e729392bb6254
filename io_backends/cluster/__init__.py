"""Several hosts acting as one, over NATS (docs/CLUSTER.md).

``HttpAgentServer(cluster="nats://...")`` (or ``autogen-http-host --cluster nats://...``) makes a
host join the others: its link is :class:`io_backends.cluster._link.ClusterLink` (nats-py, the
``cluster`` extra), imported only by a clustered host.

This package also holds what tests and demos need to run a real NATS server on loopback:
:class:`NatsServer` (one server, JetStream on a temporary directory, stop and start again in
place) and :class:`NatsCluster` (three servers routed to each other). They need the
``nats-server`` binary of the ``cluster`` extra and nothing else.
"""

from ._nats_server import NatsCluster, NatsServer, NatsServerError, find_nats_server

__all__ = ["NatsCluster", "NatsServer", "NatsServerError", "find_nats_server"]
