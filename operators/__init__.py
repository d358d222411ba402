"""Pure domain logic (indicators, strategies, orders, accounting, risk) and its Bytewax shims."""
