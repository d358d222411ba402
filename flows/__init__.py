"""One module per job, wiring only: each exposes ``build_flow(settings=None)``; importing one does no work."""
