"""Decoding shared by translation, captioning and generation: greedy, batched beam search, sampling.

Two model contracts, declared as :class:`typing.Protocol` s: :class:`Seq2SeqDecoder` (translation,
captioning: ``encode`` then one token per ``step``, driven by :func:`search` / :func:`decode_batches`)
and :class:`LanguageModel` (generation: ``step`` continues a sequence, driven by :func:`sample_tokens`).
A sequence-to-sequence step is ``step(tokens, state) -> (log_probs, state)``:

* ``tokens`` ``(batch,)`` the previous token of each hypothesis
* ``state`` any nest of tensors (dict/list/tuple, or objects with ``reorder(index)`` such as
  :class:`attnapps.attention.KVCache`) whose dim 0 is the batch; beam search reorders it with
  :func:`reorder_state`
* ``log_probs`` ``(batch, vocab)``

The search never carries attention weights: :attr:`Hypotheses.attention` is a view over
:func:`attnapps.attention.record` (:func:`step_attention`), taken once for the hypotheses kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from attnapps.config import at_least, between, opt

StepFn = Callable[[Tensor, object], tuple[Tensor, object]]


@runtime_checkable
class Seq2SeqDecoder(Protocol):
    """An encoder-decoder: ``encode(**inputs) -> state`` (batch-first tensors), then
    ``step(tokens (batch,), state) -> (log_probs (batch, vocab), state)``. ``decoding_attention()`` (or,
    without it, ``explained_attention()``) names the attention modules whose weights explain each output
    token -- what :func:`step_attention` reads."""

    def encode(self, *args: Any, **kwargs: Any) -> Any: ...

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]: ...


@runtime_checkable
class LanguageModel(Protocol):
    """A causal LM: ``forward(ids (batch, len)) -> logits (batch, len, vocab)``; ``new_state(batch)``;
    ``step(ids (batch, new), state) -> (logits (batch, new, vocab), state)`` continues the sequence held
    in ``state`` (key/value caches); ``context``: the longest window it reads."""

    context: int

    def __call__(self, ids: Tensor) -> Tensor: ...

    def new_state(self, batch: int = 1) -> Any: ...

    def step(self, ids: Tensor, state: Any) -> tuple[Tensor, Any]: ...


def reorder_state(state, index: Tensor):
    """Select rows ``index`` along dim 0 of every tensor in ``state``."""
    if state is None:
        return None
    if torch.is_tensor(state):
        return state.index_select(0, index)
    if hasattr(state, "reorder"):
        return state.reorder(index)
    if isinstance(state, dict):
        return {k: reorder_state(v, index) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(reorder_state(v, index) for v in state)
    return state


@dataclass
class BeamOptions:
    """The search options of a sequence-to-sequence task, declared once: its config's ``decode`` section
    and its predict options both subclass it (a task with another length penalty subclasses it once and
    overrides ``alpha``), and predict and the server default to the run's own ``decode`` values
    (``Task.predict_defaults``)."""

    beam: int = opt(5, "beam size (1 = greedy)", check=at_least(1))
    alpha: float = opt(0.6, "GNMT length penalty (0 = none)", check=at_least(0))
    n_best: int = opt(1, "beam search: the N best finished hypotheses, with their log-probabilities, listed by "
                      "predict (and kept where a task reports them)", check=at_least(1))
    min_len: int = opt(0, "no end of sequence before this many tokens", check=at_least(0))
    no_repeat_ngram: int = opt(0, "no n-gram of this many tokens twice in an output (0 = off)", check=at_least(0))
    repetition_penalty: float = opt(1.0, "each token already in the output: its log-probability times this, then "
                                    "renormalised (Keskar et al. 2019; 1 = off)", check=at_least(1))
    coverage: float = opt(0.0, "beam search: the coverage penalty's weight beta (Wu et al. 2016): the finished "
                          "hypotheses ranked by their score + beta * sum over the source of log min(attention "
                          "received, 1) (0 = off)", check=at_least(0))
    temperature: float = opt(0.0, "> 0: sample each token instead of searching (softmax temperature; then "
                             "top_k, top_p); 0 = beam search / greedy", check=at_least(0))
    top_k: int = opt(0, "sampling: only the k most likely tokens (0 = all)", check=at_least(0))
    top_p: float = opt(1.0, "sampling: only the smallest set of tokens with this much probability (nucleus)",
                       check=between(0, 1, lo_open=True))
    seed: int = opt(0, "sampling: the random seed (the same seed, the same samples)")


@dataclass(frozen=True)
class StepRules:
    """What constrains each decoding step, applied to the log-probabilities of every live hypothesis
    before the search (greedy, beam, sampling) chooses: ``min_len`` (EOS banned before), ``no_repeat_ngram``
    (a token that would repeat an n-gram of the output banned), ``repetition_penalty`` (the
    log-probability of each token already in the output multiplied by it), then renormalised.

    >>> rules = StepRules(no_repeat_ngram=2)
    >>> history = torch.tensor([[5, 6, 5]])   # "5 6" already there: after 5, 6 is banned
    >>> rules.apply(torch.log_softmax(torch.zeros(1, 8), -1), history, eos=1)[0, 6].item()
    -inf
    """

    min_len: int = 0
    no_repeat_ngram: int = 0
    repetition_penalty: float = 1.0

    @classmethod
    def of(cls, options) -> "StepRules":
        """From any options object with these attributes (a task's ``decode`` section, predict options)."""
        return cls(int(getattr(options, "min_len", 0)), int(getattr(options, "no_repeat_ngram", 0)),
                   float(getattr(options, "repetition_penalty", 1.0)))

    @property
    def active(self) -> bool:
        return self.min_len > 0 or self.no_repeat_ngram > 0 or self.repetition_penalty != 1.0

    def apply(self, log_probs: Tensor, history: Tensor, eos: int, bos: int | None = None) -> Tensor:
        """``log_probs (rows, vocab)`` of the next token after ``history (rows, t)`` (BOS not included);
        ``bos`` is banned too (with EOS banned, a weak model's next best is often BOS)."""
        if not self.active:
            return log_probs
        rows, t = history.shape
        lp = log_probs.float().clone()
        if t > 0 and self.repetition_penalty != 1.0:
            seen = torch.zeros_like(lp, dtype=torch.bool).scatter_(1, history, True)  # (rows, vocab)
            lp = torch.where(seen, lp * self.repetition_penalty, lp)
        n = self.no_repeat_ngram
        if n > 0 and t >= n - 1:
            vocab = lp.size(1)
            banned = torch.zeros(rows, vocab + 1, dtype=torch.bool, device=lp.device)  # + a column for "none"
            if n == 1:
                banned.scatter_(1, history, True)
            elif t >= n:
                grams = history.unfold(1, n, 1)  # (rows, t - n + 1, n): every n-gram so far
                match = (grams[..., :-1] == history[:, t - n + 1:].unsqueeze(1)).all(-1)  # its prefix = the last n-1
                banned.scatter_(1, torch.where(match, grams[..., -1], vocab), True)  # what would complete it
            lp = lp.masked_fill(banned[:, :vocab], float("-inf"))
        if t < self.min_len:
            lp[:, eos] = float("-inf")
        if bos is not None and bos != eos:
            lp[:, bos] = float("-inf")
        return torch.log_softmax(lp, -1)


@dataclass
class Hypotheses:
    """Decoding result for a batch: ``tokens[i]`` ids without BOS/EOS; ``scores[i]`` total
    log-probability; ``attention[i]`` ``(len, keys)`` from :func:`step_attention` (None where not asked
    for, or for an empty output). ``nbest[i]`` (beam search with ``n_best`` > 1): up to ``n_best``
    finished hypotheses ``(tokens, score)``, best (length-normalised) first."""

    tokens: list[list[int]]
    scores: list[float]
    attention: list[Tensor | None]
    nbest: list[list[tuple[list[int], float]]] | None = None


def length_penalty(length: Tensor, alpha: float) -> Tensor:
    """GNMT length penalty (Wu et al. 2016): ``((5 + length) / 6) ** alpha``; alpha = 0 gives 1."""
    return ((5.0 + length.float()) / 6.0) ** alpha


@torch.no_grad()
def greedy(step: StepFn, state, batch_size: int, bos: int, eos: int, max_len: int | Tensor,
           device=None, rules: StepRules = StepRules(), sampling: "Sampling | None" = None) -> Hypotheses:
    """Pick the most likely token at each step until EOS or ``max_len`` (int or ``(batch,)``); with
    ``sampling``, draw it instead (:func:`sample_next`)."""
    max_lens = torch.as_tensor(max_len, device=device).expand(batch_size) if not torch.is_tensor(max_len) \
        else max_len.to(device)
    tokens = torch.full((batch_size,), bos, dtype=torch.long, device=device)  # (batch,)
    out, scores = [], torch.zeros(batch_size, device=device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    generator = sampling.generator(device) if sampling is not None else None
    for t in range(int(max_lens.max())):
        log_probs, state = step(tokens, state)  # (batch, vocab)
        if rules.active:
            history = torch.stack(out, 1) if out else tokens.new_zeros(batch_size, 0)  # (batch, t)
            log_probs = rules.apply(log_probs, history, eos, bos)
        if sampling is None:
            best_lp, tokens = log_probs.max(-1)  # (batch,)
        else:
            tokens = sample_next(log_probs, sampling.temperature, sampling.top_k, sampling.top_p, generator)
            best_lp = log_probs.float().gather(1, tokens.unsqueeze(1)).squeeze(1)
        scores += best_lp.masked_fill(finished, 0.0)
        out.append(tokens)
        finished |= (tokens == eos) | (t + 1 >= max_lens)
        if finished.all():
            break
    ids = torch.stack(out, 1).tolist()  # (batch, steps)
    result = [row[:min(row.index(eos) if eos in row else len(row), int(max_lens[i]))] for i, row in enumerate(ids)]
    return Hypotheses(result, scores.tolist(), [None] * batch_size)


@torch.no_grad()
def beam_search(step: StepFn, state, batch_size: int, bos: int, eos: int, max_len: int | Tensor,
                beam: int = 5, alpha: float = 0.6, device=None, n_best: int = 1,
                rules: StepRules = StepRules()) -> Hypotheses:
    """Batched beam search over ``batch_size`` inputs (``state`` has ``batch_size`` rows).

    Each step keeps the ``beam`` best live continuations per input; a candidate ending in EOS that
    ranks among the ``beam`` best moves to the finished list (as in fairseq). An input stops once ``beam`` hypotheses finished, or at ``max_len`` (int or
    ``(batch,)``), where live beams count as finished, so every input gets a hypothesis. The answer is
    the finished hypothesis with the best ``log P / length_penalty(len + 1, alpha)`` (GNMT; the +1
    counts EOS). ``beam=1`` is exactly greedy. ``n_best`` > 1 also returns the ``n_best`` best finished
    hypotheses of each input (``Hypotheses.nbest``), e.g. for re-ranking. ``rules`` (:class:`StepRules`)
    constrain every step.
    """
    max_lens = (max_len.to(device) if torch.is_tensor(max_len)
                else torch.full((batch_size,), int(max_len), device=device))
    b, k = batch_size, beam
    index = torch.arange(b, device=device).repeat_interleave(k)  # (b*k,)
    state = reorder_state(state, index)
    tokens = torch.full((b * k,), bos, dtype=torch.long, device=device)  # (b*k,)
    beam_scores = torch.zeros(b, k, device=device)  # (b, k)
    beam_scores[:, 1:] = float("-inf")  # only one live copy at t = 0
    history = torch.empty(b * k, 0, dtype=torch.long, device=device)  # (b*k, t)
    finished: list[list[tuple[float, float, list[int]]]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool, device=device)
    for t in range(int(max_lens.max())):
        log_probs, state = step(tokens, state)  # (b*k, V)
        log_probs = rules.apply(log_probs, history, eos, bos)
        vocab = log_probs.size(-1)
        cand = (beam_scores.view(-1, 1) + log_probs.float()).view(b, k * vocab)  # (b, k*V)
        top_scores, top_ids = cand.topk(2 * k, dim=-1)  # (b, 2k): enough to refill k live beams
        src_beam, tok = top_ids // vocab, top_ids % vocab  # (b, 2k)
        new_scores = torch.full((b, k), float("-inf"), device=device)
        new_origin = torch.zeros(b, k, dtype=torch.long, device=device)
        new_tok = torch.full((b, k), eos, dtype=torch.long, device=device)
        ts, ti, tt = top_scores.tolist(), src_beam.tolist(), tok.tolist()
        for i in range(b):
            if done[i]:
                continue
            last = t + 1 >= int(max_lens[i])
            filled = 0
            for rank, (score, origin, token) in enumerate(zip(ts[i], ti[i], tt[i])):
                if score == float("-inf"):
                    break
                row = i * k + origin
                if token == eos and rank >= k:
                    continue  # as fairseq: only an EOS among the k best candidates finishes a hypothesis
                if token == eos or last:
                    seq = history[row].tolist() + ([] if token == eos else [token])
                    finished[i].append((score / float(length_penalty(torch.tensor(len(seq) + 1), alpha)), score, seq))
                else:
                    new_scores[i, filled], new_origin[i, filled], new_tok[i, filled] = score, origin, token
                    filled += 1
                if filled == k:
                    break
            if last or filled == 0 or len(finished[i]) >= k:
                done[i] = True  # k finished hypotheses: stop this input (beam=1 is then exactly greedy)
        if done.all():
            break
        rows = (torch.arange(b, device=device).unsqueeze(1) * k + new_origin).view(-1)  # (b*k,)
        history = torch.cat([history.index_select(0, rows), new_tok.view(-1, 1)], 1)  # (b*k, t+1)
        state = reorder_state(state, rows)
        tokens = new_tok.view(-1)
        beam_scores = new_scores.masked_fill(done.unsqueeze(1), float("-inf"))
    out_tokens, out_scores, nbest = [], [], []
    for i in range(b):
        ranked = sorted(finished[i], key=lambda f: -f[0])  # stable: ties keep the order they finished in
        out_tokens.append(ranked[0][2])
        out_scores.append(ranked[0][1])
        nbest.append([(f[2], f[1]) for f in ranked[:n_best]])
    return Hypotheses(out_tokens, out_scores, [None] * b, nbest if n_best > 1 else None)


@dataclass(frozen=True)
class Sampling:
    """Draw each token instead of searching: ``temperature`` (> 0), ``top_k``, ``top_p``, ``seed``."""

    temperature: float
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    @classmethod
    def of(cls, options) -> "Sampling | None":
        """From options with a ``temperature`` (> 0 samples; 0 or none: None, search)."""
        t = float(getattr(options, "temperature", 0.0) or 0.0)
        return cls(t, int(getattr(options, "top_k", 0)), float(getattr(options, "top_p", 1.0)),
                   int(getattr(options, "seed", 0))) if t > 0 else None

    def generator(self, device=None) -> torch.Generator:
        g = torch.Generator(device=device or "cpu")
        g.manual_seed(self.seed)
        return g


def search(step: StepFn, state, batch_size: int, bos: int, eos: int, max_len: int | Tensor, beam: int = 1,
           alpha: float = 0.0, n_best: int = 1, device=None, rules: StepRules = StepRules(),
           sampling: Sampling | None = None) -> Hypotheses:
    """Sampling when ``sampling`` is given, greedy when ``beam`` <= 1, else :func:`beam_search`."""
    kw = dict(batch_size=batch_size, bos=bos, eos=eos, max_len=max_len, device=device, rules=rules)
    if beam <= 1 or sampling is not None:
        return greedy(step, state, sampling=sampling, **kw)
    return beam_search(step, state, beam=beam, alpha=alpha, n_best=n_best, **kw)


def step_attention(model: Seq2SeqDecoder, encode_inputs: dict, outputs: list[list[int]], bos: int,
                   device=None) -> list[Tensor | None]:
    """:attr:`Hypotheses.attention` as a view over :func:`attnapps.attention.record`: ``outputs`` (one
    token list per row of ``encode_inputs``) are forced through ``model.encode(**encode_inputs)`` and
    ``model.step`` while ``record`` records; row ``i``'s view is ``(len(outputs[i]), keys)``: for each
    output token, the weights of the modules ``model.decoding_attention()`` names (default
    ``explained_attention()``), averaged over heads and side by side over their keys. None for an
    empty output. The same weights the search saw (decoding is deterministic in eval mode), taken in
    one batched pass for the hypotheses kept instead of carried through every beam."""
    from attnapps.attention import record

    steps = max((len(o) for o in outputs), default=0)
    if steps == 0:
        return [None] * len(outputs)
    names = {id(m): name for name, m in model.named_modules()}
    modules = (model.decoding_attention if hasattr(model, "decoding_attention") else model.explained_attention)()
    prev = torch.tensor([[bos] + o[:steps - 1] + [bos] * (steps - 1 - len(o[:steps - 1])) for o in outputs],
                        device=device)  # (batch, steps): each step's input token
    with torch.no_grad(), record(model) as maps:
        state = model.encode(**encode_inputs)
        for t in range(steps):
            _, state = model.step(prev[:, t], state)
    attn = torch.cat([maps[names[id(m)]].float().mean(1) for m in modules], -1)  # (batch, steps, keys)
    return [attn[i, :len(o)] if o else None for i, o in enumerate(outputs)]


def coverage_penalty(attention: Tensor) -> float:
    """Wu et al. (2016)'s coverage penalty without its weight: ``sum_i log min(sum_j a_ij, 1)`` over the
    source positions ``i`` an output ``attention (len, keys)`` could attend (masked padding, which receives
    exactly 0, is left out): 0 when every source position received at least a whole token's attention.

    >>> coverage_penalty(torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]))   # both covered; padding
    0.0
    >>> round(coverage_penalty(torch.tensor([[0.9, 0.1], [0.9, 0.1]])), 4)  # log 0.2: the second, barely read
    -1.6094
    """
    received = attention.float().sum(0)  # (keys,)
    return float(received[received > 0].clamp(max=1.0).log().sum())


def decode_batches(model: Seq2SeqDecoder, examples: Sequence, inputs: Callable[[list], tuple[dict, int | Tensor]],
                   bos: int, eos: int, beam: int = 1, alpha: float = 0.0, n_best: int = 1, batch_size: int = 64,
                   order: Sequence[int] | None = None, device=None, attention: bool = True,
                   rescore: Callable[[Any, list[tuple[list[int], float]]], list[float]] | None = None,
                   candidates: Callable[[list], list[list[tuple[list[int], float]]]] | None = None,
                   options=None) -> Hypotheses:
    """Decode ``examples`` batch by batch (in ``order``, e.g. by length; default: as given) and return
    the hypotheses in the examples' order. ``inputs(chunk) -> (encode keyword arguments on the device,
    max_len (int or (batch,)))`` turns a chunk of examples into the model's input. ``attention``: fill
    :attr:`Hypotheses.attention` with :func:`step_attention` for the best hypotheses.

    ``rescore(example, finished) -> scores`` (beam search only) re-ranks each input's ``beam`` finished
    hypotheses ``(tokens, log P)``: the one with the highest score becomes the answer (and the n-best
    list follows the new order) -- e.g. a task's noisy-channel or length features. Its attention is
    taken after the choice. ``candidates(chunk) -> per example [(tokens, log P)]`` (with ``rescore``):
    hypotheses from elsewhere -- another system's output, a retrieved neighbour -- appended after the
    beam's finished ones before ``rescore`` sees them, so the re-ranking may pick one.

    ``options`` (a :class:`BeamOptions`, e.g. a task's ``decode`` section or predict options): the step
    rules (:class:`StepRules`), sampling (``temperature`` > 0: :class:`Sampling`, no beam) and the
    coverage penalty (``coverage`` > 0, beam search: :func:`coverage_penalty` times it is added to each
    finished hypothesis's score -- ``log P / length_penalty``, or the task's ``rescore`` -- before ranking)."""
    model.eval()
    order = list(range(len(examples))) if order is None else list(order)
    n = len(examples)
    out = Hypotheses([None] * n, [0.0] * n, [None] * n, [None] * n if n_best > 1 else None)
    rules, sampling = StepRules.of(options), Sampling.of(options)
    coverage = float(getattr(options, "coverage", 0.0)) if beam > 1 and sampling is None else 0.0
    rescore = rescore if beam > 1 and sampling is None else None
    ranks = rescore is not None or coverage > 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        kwargs, max_len = inputs([examples[i] for i in idx])
        hyps = search(model.step, model.encode(**kwargs), len(idx), bos, eos, max_len, beam, alpha,
                      beam if ranks else n_best, device, rules, sampling)
        if ranks:
            extra = (candidates([examples[i] for i in idx]) if rescore is not None and candidates is not None
                     else [[] for _ in idx])
            finished = [hyps.nbest[j] + list(extra[j]) for j in range(len(idx))]
            penalty = coverage_terms(model, kwargs, finished, bos, device) if coverage > 0 else None
            for j, i in enumerate(idx):
                scores = (rescore(examples[i], finished[j]) if rescore is not None
                          else [lp / float(length_penalty(torch.tensor(len(t) + 1), alpha)) for t, lp in finished[j]])
                if penalty is not None:
                    scores = [sc + coverage * c for sc, c in zip(scores, penalty[j])]
                ranked = [finished[j][r] for r in sorted(range(len(scores)), key=lambda r: -scores[r])]  # stable
                hyps.tokens[j], hyps.scores[j] = ranked[0]
                hyps.nbest[j] = ranked[:n_best]
            hyps.nbest = hyps.nbest if n_best > 1 else None
        if attention:
            hyps.attention = step_attention(model, kwargs, hyps.tokens, bos, device)
        for j, i in enumerate(idx):
            out.tokens[i], out.scores[i], out.attention[i] = hyps.tokens[j], hyps.scores[j], hyps.attention[j]
            if out.nbest is not None:
                out.nbest[i] = hyps.nbest[j] if hyps.nbest is not None else None
    return out


def coverage_terms(model, kwargs: dict, finished: list[list[tuple[list[int], float]]], bos: int,
                   device=None) -> list[list[float]]:
    """:func:`coverage_penalty` of every hypothesis in ``finished`` (per input of ``kwargs``' batch), their
    attention taken in one forced pass (:func:`step_attention`) over the inputs' rows repeated."""
    rows = torch.tensor([j for j, f in enumerate(finished) for _ in f], device=device)
    repeated = {k: v.index_select(0, rows) if torch.is_tensor(v) else v for k, v in kwargs.items()}
    attn = step_attention(model, repeated, [t for f in finished for t, _ in f], bos, device)
    flat = [coverage_penalty(a) if a is not None else 0.0 for a in attn]
    out, k = [], 0
    for f in finished:
        out.append(flat[k:k + len(f)])
        k += len(f)
    return out


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Set to ``-inf`` every logit outside the top-k and outside the nucleus of mass ``top_p``
    (Holtzman et al. 2020); the most likely token always stays. ``logits (batch, vocab)``."""
    if top_k > 0 and top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (batch, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (batch, vocab)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of strictly more likely tokens
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per row from ``logits (batch, vocab)``; temperature 0 = argmax."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (batch,)


@torch.no_grad()
def sample_tokens(model: LanguageModel, prompt: list[int], max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0, seed: int | None = None, use_cache: bool = True,
                  should_stop: Callable[[list[int]], bool] | None = None, device=None,
                  rules: StepRules = StepRules()) -> list[int]:
    """Continue ``prompt`` (token ids) with up to ``max_new_tokens`` sampled tokens (temperature 0 =
    greedy) from a causal LM with the interface ``forward(ids) -> logits (1, len, vocab)``,
    ``new_state(batch)``, ``step(ids, state) -> (logits, state)`` and attribute ``context``.

    The model sees a window of the sequence: when it would exceed ``context`` tokens, the window
    restarts at the last ``context // 2`` tokens. With ``use_cache`` the window's keys/values are kept
    between steps (one new token per step, a prefill when the window restarts); without, every step
    runs the whole window again. Both compute the same distributions and draw from the same seeded
    generator, so they return the same tokens. ``should_stop(new_tokens)`` ends early (stop strings).
    ``rules``: ``no_repeat_ngram`` and ``repetition_penalty`` over the new
    tokens (:class:`StepRules`; ``min_len`` does not apply: there is no end token).
    """
    context = model.context
    seq = list(prompt) or [0]
    start = 0
    generator = torch.Generator(device=device or "cpu")
    generator.manual_seed(0 if seed is None else seed)
    state, fed = None, 0  # fed: tokens of the window already in the cache
    out: list[int] = []
    for _ in range(max_new_tokens):
        if len(seq) - start > context:
            start = len(seq) - context // 2
            state = None
        if use_cache:
            if state is None:
                state, fed = model.new_state(1), start
            new = torch.tensor([seq[fed:]], device=device)  # (1, new): the prompt/window, then 1 token
            logits, state = model.step(new, state)
            fed = len(seq)
        else:
            logits = model(torch.tensor([seq[start:]], device=device))  # (1, window, vocab)
        last = logits[:, -1].float()  # (1, vocab)
        if rules.active:
            last = rules.apply(torch.log_softmax(last, -1), torch.tensor([out], dtype=torch.long, device=last.device),
                               eos=-1)  # softmax(log p / T) = softmax(logits / T): sampling unchanged otherwise
        token = int(sample_next(last, temperature, top_k, top_p, generator=generator))
        seq.append(token)
        out.append(token)
        if should_stop is not None and should_stop(out):
            break
    return out
