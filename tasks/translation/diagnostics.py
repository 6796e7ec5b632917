"""What the translation model's attention explains (:mod:`attnapps.diagnostics`): per produced target
token of a test sentence (greedy), its attention over the source pieces, its probability with a source
piece removed or with the attention permuted (teacher-forcing the same hypothesis), and input x gradient
on the source embeddings; with gold word alignments, the alignment error rate of the attention."""

from __future__ import annotations

import torch

from attnapps.decoding import step_attention
from attnapps.diagnostics import EmbeddingGrad, ModelProbe, alignment_error_rate, read_alignments


WORDS = 8  # explained target tokens per sentence (the first ones)


def probes(task, model, indices: list[int]) -> list[ModelProbe]:
    tok, device, modules = task.tgt_tok, task.device, model.explained_attention()
    out = []
    for i in indices:
        src = task.datasets["test"][i][0] or [task.src_tok.unk_id]
        hyp = task.translate(model, [src], beam=1)
        tokens, att = hyp.tokens[0], hyp.attention[0]
        if not tokens or att is None:
            continue
        tgt_in = torch.tensor([[tok.bos_id] + tokens], device=device)  # (1, T + 1)
        cache: dict = {}

        def forced(ids: list[int], tgt_in=tgt_in, cache=cache) -> torch.Tensor:
            """Probabilities at every position of the hypothesis, given source ``ids`` (1 + T, vocab); one
            pass per erasure and per permutation."""
            key = (tuple(ids), id(modules[0].intervention))
            if key not in cache:
                src_t = torch.tensor([ids], device=device)
                cache[key] = torch.softmax(model(src_t, torch.tensor([len(ids)], device=device), tgt_in)[0].float(), -1)
            return cache[key]

        for t, y in list(enumerate(tokens))[:WORDS]:
            def saliency(t=t, y=y, src=src, tgt_in=tgt_in):
                grad = EmbeddingGrad(model.input_embedding())
                with grad, torch.enable_grad():
                    logits = model(torch.tensor([src], device=device), torch.tensor([len(src)], device=device), tgt_in)
                    torch.log_softmax(logits[0, t].float(), -1)[y].backward()
                return grad.saliency(0)[0].cpu()

            out.append(ModelProbe(src, lambda ids, t=t, forced=forced: forced(ids)[t], att[t].cpu(), y, modules,
                                  saliency, group=i))
    return out


def word_index(pieces: list[str]) -> list[int]:
    """The whitespace word each sentencepiece piece belongs to (a piece starting with ▁ starts a word)."""
    out, word = [], -1
    for k, p in enumerate(pieces):
        if p.startswith("▁") or k == 0:
            word += 1
        out.append(max(word, 0))
    return out


def forced_attention(model, src: list[int], tgt: list[int], bos: int, device) -> torch.Tensor:
    """The attention ``(len(tgt), len(src))`` while the model reads the reference ``tgt`` (teacher forcing)."""
    inputs = {"src": torch.tensor([src], device=device), "src_len": torch.tensor([len(src)], device=device)}
    return step_attention(model, inputs, [tgt], bos, device)[0].cpu()


def aer(task, model, path: str) -> float:
    """Alignment error rate of the attention (each reference word linked to the source word of its pieces'
    attention peaks) against the gold Pharaoh alignments of the test split."""
    gold = read_alignments(path, line_count=len(task.datasets["test"]))
    if task.cfg.data.reverse:  # the file aligns the data's source and target as written
        gold = [({(j, i) for i, j in s}, {(j, i) for i, j in p}) for s, p in gold]
    predicted = []
    for src, tgt in task.datasets["test"]:
        if not src or not tgt:
            predicted.append(set())
            continue
        att = forced_attention(model, src, tgt, task.tgt_tok.bos_id, task.device)  # (T, S)
        src_words = word_index([task.src_tok.id_to_piece(x) for x in src])
        tgt_words = word_index([task.tgt_tok.id_to_piece(x) for x in tgt])
        predicted.append({(src_words[int(att[j].argmax())], tgt_words[j]) for j in range(len(tgt))})
    return alignment_error_rate(predicted, gold)
