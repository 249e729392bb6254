"""``from autogen_http_runtime.runtimes.http import HttpWorkerAgentRuntime, HttpWorkerAgentRuntimeHost, ...``."""

from io_backends import HttpAgentServer, HttpAgentService, HttpWorkerAgentRuntime, HttpWorkerAgentRuntimeHost

__all__ = ["HttpAgentServer", "HttpAgentService", "HttpWorkerAgentRuntime", "HttpWorkerAgentRuntimeHost"]
