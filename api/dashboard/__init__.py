"""The profiling dashboard served by the API service (see routes.py)."""

from .routes import data, pages

__all__ = ["data", "pages"]
