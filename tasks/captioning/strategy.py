"""How the final evaluation captions images (``decode.strategy``): greedy, beam search, the beam's n-best
re-ranked by consensus with the captions of the nearest training images (Devlin et al. 2015), or no
decoding at all -- the k-NN consensus caption itself (``knn``, the retrieval baseline as a candidate, so a
model that retrieval beats on valid is not the one that captions test); ``auto`` picks the one with the
best CIDEr-D on valid, once, after training."""

from __future__ import annotations

import torch

from attnapps.metrics import cider_d

from .retrieval import neighbours

DECODINGS = ("greedy", "beam", "rerank")  # the model's captions
STRATEGIES = DECODINGS + ("knn",)  # ties go to the earlier (the model before retrieval)


class Strategy:
    """The chosen strategy of a captioning task, its valid scores and its (reused) valid decodes."""

    def __init__(self, task):
        self.task = task
        self.name: str | None = None
        self.scores: dict[str, float] = {}
        self.valid_decodes: dict[str, tuple] = {}

    def decode_split(self, model, split: str, limit: int = 0, beam: int = 1, alpha: float = 0.0,
                     rerank: list | None = None, keep_first: bool = False):
        """Token ids and attention per image of ``split``. ``rerank``: per image, the captions the beam's
        finished hypotheses are re-ranked against; None keeps the beam's best. ``keep_first`` (with
        ``rerank``): also return the beam's own best, ``(hyps, attns, hyps0, attns0)``."""
        t = self.task
        examples = t.datasets[split][: limit or None]
        out = t.decode_images(model, examples, beam, alpha, n_best=beam if rerank is not None else 1)
        hyps, attns = out.tokens, out.attention
        if rerank is not None and out.nbest is not None:
            hyps = []
            for i, cands in enumerate(out.nbest):
                sims = [t.scorer.mean_similarity(t.vocab.decode(c), rerank[i]) for c, _ in cands]
                hyps.append(cands[max(range(len(cands)), key=lambda j: (sims[j], -j))][0])
            moved = [i for i, h in enumerate(hyps) if h != out.tokens[i]]  # the attention of the new choices
            attns = list(out.attention)
            for i, a in zip(moved, t.caption_attention(model, [examples[i] for i in moved], [hyps[i] for i in moved])):
                attns[i] = a
        return (hyps, attns, out.tokens, out.attention) if keep_first else (hyps, attns)

    def captions(self, model, split: str, strategy: str) -> tuple[list[list[str]], list]:
        """``(words, attns)`` per image of ``split`` with ``strategy``; ``knn`` captions have no attention."""
        if strategy == "knn":
            words = self.task.retrieval_baseline(model)[f"{split}_captions"]
            return [list(w) for w in words], [None] * len(words)
        hyps, attns = self.decode(model, split, strategy)
        return [self.task.vocab.decode(h) for h in hyps], attns

    def decode(self, model, split: str, strategy: str, limit: int = 0):
        """``(hyps, attns)`` of ``split`` with ``strategy`` (valid outputs of the auto choice are reused)."""
        if split == "valid" and strategy in self.valid_decodes:
            return self.valid_decodes[strategy]
        dec = self.task.cfg.decode
        if strategy == "greedy":
            return self.decode_split(model, split, limit)
        rerank = self.rerank_references(model, split) if strategy == "rerank" else None
        return self.decode_split(model, split, limit, max(dec.beam, 1), dec.alpha, rerank)

    def rerank_references(self, model, split: str) -> list:
        """Per image of ``split``: the captions of its ``decode.rerank_k`` nearest training images (0 = the
        k the k-NN baseline chose on valid) -- what ``strategy=rerank`` scores the beam's hypotheses against
        (mean CIDEr-D, the consensus of Devlin et al. 2015 applied to generated captions)."""
        t = self.task
        base = t.retrieval_baseline(model)
        k = t.cfg.decode.rerank_k or base["k"]
        feats = base["feats"]
        train_rows = torch.tensor([row for row, _ in t.items["train"]], dtype=torch.long)
        rows = torch.tensor([row for row, _ in t.items[split]], dtype=torch.long)
        exclude = torch.arange(len(rows)) if split == "train" else None
        nb = neighbours(feats[rows], feats[train_rows], k, exclude)
        train_caps = [it.captions for _, it in t.items["train"]]
        return [[c for j in row for c in train_caps[j]] for row in nb.tolist()]

    def choose(self, model) -> str:
        """``decode.strategy``, or with ``auto`` the one of greedy / beam / rerank / knn whose valid CIDEr-D
        is highest (decided once, after training; the scores go to the report). ``knn`` is a candidate
        only where a saved model can retrieve for a new image as the test split was captioned (the
        retrieved memory's index of training images: a frozen encoder and ``model.retrieval_k`` > 0)."""
        t, dec = self.task, self.task.cfg.decode
        if dec.strategy != "auto":
            self.name = str(dec.strategy)
            return self.name
        if self.name is not None:
            return self.name
        if not t.datasets.get("valid"):
            self.name = "beam"
            return self.name
        refs = [it.captions for _, it in t.items["valid"]]
        self.valid_decodes["greedy"] = self.decode_split(model, "valid")
        nbest = self.decode_split(model, "valid", 0, max(dec.beam, 1), dec.alpha, self.rerank_references(model, "valid"),
                                  keep_first=True)  # one beam search gives both
        self.valid_decodes["rerank"], self.valid_decodes["beam"] = nbest[:2], nbest[2:]
        for name in DECODINGS:
            self.scores[name] = cider_d([t.vocab.decode(h) for h in self.valid_decodes[name][0]], refs)[0]
        if t.memory.index is not None:
            self.scores["knn"] = cider_d(t.retrieval_baseline(model)["valid_captions"], refs)[0]
        self.name = max(self.scores, key=lambda n: (self.scores[n], -STRATEGIES.index(n)))  # ties: the simpler
        return self.name

    def describe(self) -> str:
        t, dec = self.task, self.task.cfg.decode
        name = self.name or str(dec.strategy)
        k = dec.rerank_k or (getattr(t, "baseline", None) or {}).get("k", "?")
        what = {"greedy": "greedy", "beam": f"beam (beam search, beam {dec.beam}, length penalty {dec.alpha})",
                "rerank": f"rerank (the beam's {dec.beam} best re-ranked by consensus with the captions of the "
                          f"{k} nearest training images)",
                "knn": f"knn (no decoding: the k-NN consensus caption of the {k} nearest training images -- on valid "
                       "retrieval captions better than the model's decoding)"}[name]
        if dec.strategy == "auto" and self.scores:
            what += " -- chosen on valid by CIDEr-D: " + ", ".join(f"{k} {v:.3f}" for k, v in self.scores.items())
        return what
