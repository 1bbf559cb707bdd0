"""provider_sim: a loopback HTTP/1.1 server that speaks the vendors' wire formats, with faults.

Modules, each importing only those after it: `server.py` the server (start here), `routes.py`
the route table, `chat.py`, `jobs.py`, `control.py` the handlers, `state.py` the configuration,
counters and jobs they share, `http.py` the HTTP/1.1 plumbing. `sim_assets/` holds the drift
face. This file imports nothing, so importing a submodule pulls in nothing else.
"""
