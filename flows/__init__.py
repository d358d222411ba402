"""One module per job; each exposes build_flow(settings) and a module-level flow."""
