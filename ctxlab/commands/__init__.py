"""One module per ``ctxlab`` sub-command (see ``ctxlab.cli``)."""
