"""One module per competing queue; each exposes ``Peer`` (see base.py)."""
