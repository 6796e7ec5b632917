"""How the final evaluation captions images (``decode.strategy``): greedy, beam search, the beam's n-best
re-ranked by consensus with the captions of the nearest training images (Devlin et al. 2015), or no
decoding at all -- the k-NN consensus caption itself (``knn``, the retrieval baseline as a candidate, so a
model that retrieval beats on valid is not the one that captions test); ``auto`` picks the one with the
best CIDEr-D on valid, once, after training."""

from __future__ import annotations

import torch

from attnapps.metrics import cider_d

from attnapps.data.prepared import View
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
        self.rerank_cache: dict = {}

    def decode_split(self, model, split: str, limit: int = 0, beam: int = 1, alpha: float = 0.0,
                     rerank=None, keep_first: bool = False, part: range | None = None):
        """Token ids and attention per image of ``split`` (its first ``limit``, or the images in ``part``).
        ``rerank``: per image of the split, the captions the beam's finished hypotheses are re-ranked
        against; None keeps the beam's best. ``keep_first`` (with ``rerank``): also return the beam's own
        best, ``(hyps, attns, hyps0, attns0)``."""
        t = self.task
        part = part if part is not None else range(min(limit or len(t.datasets[split]), len(t.datasets[split])))
        examples = t.datasets[split][part.start:part.stop]
        out = t.decode_images(model, examples, beam, alpha, n_best=beam if rerank is not None else 1)
        hyps, attns = out.tokens, out.attention
        if rerank is not None and out.nbest is not None:
            hyps = []
            for i, cands in enumerate(out.nbest):
                sims = [t.scorer.mean_similarity(t.vocab.decode(c), rerank[part.start + i]) for c, _ in cands]
                hyps.append(cands[max(range(len(cands)), key=lambda j: (sims[j], -j))][0])
            moved = [i for i, h in enumerate(hyps) if h != out.tokens[i]]  # the attention of the new choices
            attns = list(out.attention)
            for i, a in zip(moved, t.caption_attention(model, [examples[i] for i in moved], [hyps[i] for i in moved])):
                attns[i] = a
        return (hyps, attns, out.tokens, out.attention) if keep_first else (hyps, attns)

    def captions(self, model, split: str, strategy: str, part: range | None = None) -> tuple[list[list[str]], list]:
        """``(words, attns)`` per image of ``split`` (or of the images in ``part``) with ``strategy``; ``knn``
        captions have no attention."""
        part = part if part is not None else range(len(self.task.datasets[split]))
        if strategy == "knn":
            words = self.task.retrieval_baseline(model)[f"{split}_captions"][part.start:part.stop]
            return [list(w) for w in words], [None] * len(words)
        hyps, attns = self.decode(model, split, strategy, part)
        return [self.task.vocab.decode(h) for h in hyps], attns

    def decode(self, model, split: str, strategy: str, part: range):
        """``(hyps, attns)`` of the images in ``part`` of ``split`` with ``strategy`` (valid outputs of the
        auto choice are reused)."""
        if split == "valid" and strategy in self.valid_decodes:
            return tuple(x[part.start:part.stop] for x in self.valid_decodes[strategy])
        dec = self.task.cfg.decode
        if strategy == "greedy":
            return self.decode_split(model, split, part=part)
        rerank = self.rerank_references(model, split) if strategy == "rerank" else None
        return self.decode_split(model, split, 0, max(dec.beam, 1), dec.alpha, rerank, part=part)

    def rerank_references(self, model, split: str) -> list:
        """Per image of ``split``: the captions of its ``decode.rerank_k`` nearest training images (0 = the
        k the k-NN baseline chose on valid) -- what ``strategy=rerank`` scores the beam's hypotheses against
        (mean CIDEr-D, the consensus of Devlin et al. 2015 applied to generated captions). Read when asked
        for (only the neighbours' indices are kept)."""
        t = self.task
        if split in self.rerank_cache:  # one search of neighbours per split (the final evaluation's windows)
            return self.rerank_cache[split]
        base = t.retrieval_baseline(model)
        k = t.cfg.decode.rerank_k or base["k"]
        feats = base["feats"]
        rows, train_rows = torch.from_numpy(t.items[split].rows), torch.from_numpy(t.items["train"].rows)
        exclude = torch.arange(len(rows)) if split == "train" else None
        nb = neighbours(feats[rows], feats[train_rows], k, exclude)
        train_caps = t.references("train")
        self.rerank_cache[split] = View(len(rows), lambda i: [c for j in nb[i].tolist() for c in train_caps[j]])
        return self.rerank_cache[split]

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
        refs = t.references("valid")
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
