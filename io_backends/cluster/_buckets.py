"""The registry's key-value buckets: opened, or made with the replicas the settings ask for
(docs/CLUSTER.md section 14, open question 8; docs/PROTOCOL.md section 11)."""

from __future__ import annotations

import logging
from typing import Any

import nats.js.errors
from nats.aio.client import Client as Nats
from nats.js.kv import KeyValue

from ._records import ClusterSettings

logger = logging.getLogger("io_backends.cluster")

# JetStream's answers when it cannot place that many replicas: "replicas > 1 not supported in
# non-clustered mode", "no suitable peers for placement"; and "stream name already in use" (with
# another configuration: another host made the bucket a moment ago).
TOO_FEW_SERVERS = (10074, 10005)
ALREADY_IN_USE = 10058


async def open_bucket(nc: Nats, js: Any, bucket: str, settings: ClusterSettings) -> KeyValue:
    """The bucket, made if absent (history 1, file storage, ``settings.bucket_replicas`` copies).
    Raises ConnectionError, one line naming what to do, when the NATS has too few servers."""
    replicas = settings.bucket_replicas
    try:
        kv: KeyValue = await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        try:
            kv = await js.create_key_value(bucket=bucket, history=1, replicas=replicas)
            return kv
        except nats.js.errors.APIError as exc:
            if exc.err_code in TOO_FEW_SERVERS:
                known = len(nc._server_info.get("connect_urls") or ()) or 1
                raise ConnectionError(
                    f"the cluster's buckets need {replicas} NATS servers with JetStream, and the NATS at "
                    f"{settings.url} has {'only ' if known < replicas else ''}{known} ({exc.description}): "
                    f"give --cluster-replicas {min(known, replicas - 1)} (HttpAgentServer(cluster_replicas=...)) "
                    "or add servers"
                ) from exc
            if exc.err_code != ALREADY_IN_USE:
                raise
            kv = await js.key_value(bucket)
    status = await kv.status()
    has = status.stream_info.config.num_replicas or 1
    if has != replicas:
        logger.warning(
            "cluster: bucket %s has %d replica(s), not the %d this host would make (it was made earlier); "
            "it is used as it is",
            bucket,
            has,
            replicas,
        )
    return kv


__all__ = ["open_bucket"]
