"""The live side: a `Session` with persisted memory and the OpenAI-compatible proxy.

`session` holds `Session`, `_turns` the planning of one turn shared with the proxy, `_sent` how
a reply records what its turn sent (`sent_ids`), `stores/` the memory, SQLite and Redis stores,
`proxy/` the FastAPI server (extra ``proxy``). May import the core values, `formats`,
`strategies`, `summarizers` and `providers`; never `lab` or `widgets`.
"""

from ctxlab.live._sent import sent_ids

__all__ = ["sent_ids"]
