"""What a classification run adds to its directory and its ``metrics.json`` (``attnapps.outputs``)."""

METRIC_KEYS = {
    "valid.accuracy": "* accuracy on valid",
    "valid.macro_f1": "* macro-averaged F1 on valid (the primary metric)",
    "test.accuracy": "* accuracy on test",
    "test.macro_f1": "* macro-averaged F1 on test",
    "<split>.<label>.<measure>": "the final evaluation: `precision`, `recall` and `f1` of each label",
    "<split>.tfidf_share": "voting with the TF-IDF companion (`model.tfidf_share`): the companion's share of the "
                           "vote, chosen on valid",
    "<split>.model_alone.<metric>": "voting with the TF-IDF companion: the model's own `accuracy` and `macro_f1`",
    "<split>.tfidf_alone.<metric>": "voting with the TF-IDF companion: the companion's alone",
}

RUN_FILES = {
    "plots/confusion_matrix.png": "* the test split's confusion matrix",
    "plots/attention_tokens.png": "test texts with each token shaded by its attention weight",
    "attention_tokens.html": "the same texts, shaded, as a page",
    "attention_documents.html": "`model.arch=han`: every sentence and word of a few test documents, shaded by the "
                                "sentence and word attention",
    "baseline.json": "with `report.baseline=true`: the TF-IDF + logistic regression baseline on the same splits",
}
