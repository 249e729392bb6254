"""The host's drivers and server (placeholder: the layout's own ``__init__`` replaces this)."""
