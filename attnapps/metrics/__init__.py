"""Metric helpers shared by the tasks (each a thin, tested layer over the reference implementation)."""

from attnapps.metrics.bleu import bleu_tokenizer, check_bleu_tokenizer, corpus_bleu_nltk, sacrebleu_scores
from attnapps.metrics.cider import cider_d
from attnapps.metrics.classification import classification_report
from attnapps.metrics.language_model import bits_per_char, perplexity

__all__ = ["cider_d", "sacrebleu_scores", "bleu_tokenizer", "check_bleu_tokenizer", "corpus_bleu_nltk", "classification_report", "perplexity", "bits_per_char"]
