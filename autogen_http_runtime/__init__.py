"""Compatibility package: the import paths of the 0.1.0 ``autogen_http_runtime`` package."""
