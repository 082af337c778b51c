"""Which paths are pages for people (HTML, redirects to the login page) rather than JSON
for programs."""

from __future__ import annotations

PAGE_PREFIXES = ("/admin", "/calls", "/customers", "/dashboard", "/login", "/logout", "/reports", "/upload")


def is_page(path: str) -> bool:
    return path == "/" or path.startswith(PAGE_PREFIXES)
