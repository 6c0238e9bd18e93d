"""One module per debugger page, each with ``render(ctx)``."""
