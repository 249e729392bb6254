"""``from autogen_http_runtime.runtimes.http import HttpWorkerAgentRuntime, HttpAgentServer, HttpAgentService``."""

from io_backends import HttpAgentServer, HttpAgentService, HttpWorkerAgentRuntime

__all__ = ["HttpAgentServer", "HttpAgentService", "HttpWorkerAgentRuntime"]
