"""What a translation run adds to its directory and its ``metrics.json`` (``attnapps.outputs``)."""

METRIC_KEYS = {
    "valid.bleu": "* sacreBLEU on valid (greedy on the first `decode.valid_subset` sentences while training; the "
                  "final decoding at the end), with the target language's tokenizer",
    "valid.chrf": "* chrF on valid",
    "test.bleu": "* sacreBLEU on test, decoded as `decode.*` says (beam search by default)",
    "test.chrf": "* chrF on test",
    "<split>.word_by_word_share": "with `decode.hybrid=true` (default): the share of sentences whose answer is the "
                                  "word-by-word translation",
    "baseline.<split>.<metric>": "with `report.baseline=true` (default): the word-by-word IBM Model 1 baseline "
                                 "fitted in the run, `bleu` and `chrf` on `valid` and `test`",
    "baseline.iterations": "with `report.baseline=true`: the baseline's EM iterations, chosen on valid",
    "baseline.drop_null": "with `report.baseline=true`: 1 when the baseline drops words aligned to NULL (chosen on valid)",
    "baseline.seconds": "with `report.baseline=true`: seconds the baseline took",
    "baseline_protected.<split>.<metric>": "with `decode.hybrid` and `decode.protect` (defaults): the word-by-word "
                                           "baseline with code-like tokens copied whole, alone",
    "lexicon.seconds": "with `model.lexicon=true` (default): seconds fitting IBM Model 1 for the lexicon",
    "test.<name>.<metric>": "for each further test set of `data.extra_test=`: its `bleu` and `chrf`",
    "trivial.test.<name>.<metric>": "for each `data.extra_test=` set: the source copied",
    "baseline.test.<name>.<metric>": "for each `data.extra_test=` set: the word-by-word baseline",
    "baseline_protected.test.<name>.<metric>": "for each `data.extra_test=` set: the protected word-by-word baseline",
    "diag.aer": "with gold word alignments (`data.alignments=FILE`): the attention's alignment error rate "
                "(Och & Ney 2003)",
}

RUN_FILES = {
    "test_hypotheses.txt": "* every test translation, one per line in the test split's order, written window by "
                           "window as it is decoded",
    "plots/alignment_<k>.png": "the attention over the source for test sentence k (`report.figures=` of them)",
}
