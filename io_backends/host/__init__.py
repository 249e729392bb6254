"""io_backends.host: the host, the process workers connect to.

* :class:`HttpAgentServer`: binds a port and serves (asyncio: ``start()``; any anyio backend:
  ``await serve()``); :class:`HttpWorkerAgentRuntimeHost` is the same under the gRPC runtime's name.
* :class:`HttpAgentService`: the engine and everything around it, for embedding under anyio.
* The drivers, each a thin layer over :class:`io_backends.sansio.HostHub`: asyncio protocols
  (:mod:`._asyncio`), anyio streams (:mod:`._anyio`), and a plain ``selectors`` loop
  (:mod:`.selectors_host`), which shows the whole host fits in a few dozen lines of I/O.
* ``autogen-http-host``, the command line (:mod:`._cli`).
"""

from ..sansio import Authenticator
from ._errors import HostBindError
from ._server import HttpAgentServer, HttpWorkerAgentRuntimeHost
from ._service import HttpAgentService

__all__ = ["Authenticator", "HostBindError", "HttpAgentServer", "HttpAgentService", "HttpWorkerAgentRuntimeHost"]
