"""What a captioning run adds to its directory and its ``metrics.json`` (``attnapps.outputs``)."""

METRIC_KEYS = {
    "<split>.bleu<n>": "* BLEU-1 to BLEU-4 (nltk's corpus BLEU against every reference caption)",
    "<split>.cider": "* CIDEr-D (the primary metric)",
    "<split>.grounding": "where the data names objects with boxes: the pointing game, the share of object words "
                         "whose most attended region lies in the object's box",
    "<split>.grounding_chance": "the pointing game's chance level (the boxes' share of the regions)",
    "features.images_per_sec": "* images encoded per second when the features were computed",
    "features.seconds": "* seconds computing the features (0 on a cache hit)",
    "features.cache_hit": "* 1 when the feature cache was opened, 0 when this run computed it",
}

RUN_FILES = {
    "test_captions.txt": "* every test caption, `image name<TAB>caption`, written window by window as it is decoded",
    "baseline.json": "* the k-NN consensus and 1-NN retrieval baselines on the same splits",
    "plots/attention_<k>.png": "the attention over the image's regions, word by word, for test image k",
    "plots/memory_<k>.png": "with the retrieved memory: the attention over the retrieved captions for test image k",
}
