"""What a generation run adds to its directory and its ``metrics.json`` (``attnapps.outputs``)."""

METRIC_KEYS = {
    "<split>.perplexity": "* per-token perplexity, exp(loss)",
    "<split>.bpc": "* bits per character: the loss over the text's characters, in bits (the primary metric)",
    "generate.tokens_per_sec_cached": "* sampling speed with the key/value cache",
    "generate.tokens_per_sec_uncached": "* sampling speed recomputing the whole context at each token",
}

RUN_FILES = {
    "plots/attention_heatmap.png": "* the attention of a sampled passage over its context",
}
