"""One module per ``ctxlab`` sub-command (see ``ctxlab.cli``).

Entry points: may import any package of ctxlab.
"""
