"""The live side: a `Session` with persisted memory and the OpenAI-compatible proxy.

`session` holds `Session`, `_turns` the planning of one turn shared with the proxy, `stores/`
the memory, SQLite and Redis stores, `proxy/` the FastAPI server (extra ``proxy``). May import
the core values, `formats`, `strategies`, `summarizers` and `providers`; never `lab` or `widgets`.
"""
