"""tradeflow: a streaming trading back end built on Bytewax."""
