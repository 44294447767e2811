"""One module per dashboard page; each exposes ``routes`` (see :mod:`runtime.dashboard.app`)."""
