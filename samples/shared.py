"""What the sample host, workers and orchestrator share: the message type and the host address."""

from __future__ import annotations

import os
from dataclasses import dataclass

from autogen_core import MessageSerializer, try_get_known_serializers_for_type

HOST_ADDRESS = os.environ.get("AUTOGEN_HTTP_HOST", "http://127.0.0.1:9000")


@dataclass
class TextMessage:
    content: str


def serializers() -> list[MessageSerializer[TextMessage]]:
    return try_get_known_serializers_for_type(TextMessage)
