"""AgentChat teams on the HTTP runtime, with participants in other worker processes.

* Nothing to call for a team on one worker: ``HttpWorkerAgentRuntime`` carries AgentChat's
  messages with :class:`MessageFactorySerializer` whenever ``autogen_agentchat`` is imported.
* :func:`serve_participant` serves one participant of a named team from a worker;
  :class:`RemoteParticipant` lists it in the team, in the team's own process.

Needs the ``agentchat`` extra (``pip install "autogen-http-runtime-ng[agentchat]"``).
"""

try:
    import autogen_agentchat  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by installing the wheel without the extra
    raise ImportError(
        'io_backends.agentchat needs AgentChat: pip install "autogen-http-runtime-ng[agentchat]"'
    ) from exc

from ._remote import ParticipantUnavailableError, RemoteParticipant
from ._serialization import MessageFactorySerializer, serializer_for, serializers_for, serializers_in_place_of
from ._serve import participant_agent_type, serve_participant

__all__ = [
    "MessageFactorySerializer",
    "ParticipantUnavailableError",
    "RemoteParticipant",
    "participant_agent_type",
    "serializer_for",
    "serializers_for",
    "serializers_in_place_of",
    "serve_participant",
]
