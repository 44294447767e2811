"""The web dashboard: ``wasmq dashboard`` serves it (a Starlette app under uvicorn).

Pages are server-rendered (Jinja2, autoescaped) with a little JavaScript for live logs
and confirmations; nothing is built with Node. :mod:`.app` assembles the app from the
page modules in :mod:`.pages`; :mod:`.security` holds who may see it and who may act.
"""
