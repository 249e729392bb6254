"""``python -m io_backends``: the host's command line (``autogen-http-host``)."""

from .host._cli import main

if __name__ == "__main__":
    main()
