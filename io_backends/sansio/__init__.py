"""The host's HTTP layers without any I/O (placeholder: the layout's own ``__init__`` replaces this)."""
