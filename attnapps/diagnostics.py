"""Does the attention explain the output? Diagnostics computed on a fixed subset of the test split for
every run, written to ``metrics.json`` as ``diag.*`` (:func:`diagnose`).

* **Concentration** -- mean normalised entropy ``H(w) / log n`` of the attention over the ``n`` inputs,
  and the mean weight of the top-1 / top-3 inputs.
* **Faithfulness** (Jain & Wallace 2019, "Attention is not Explanation"; Wiegreffe & Pinter 2019,
  "Attention is not not Explanation") -- Kendall's tau-b between the attention and two importance
  measures of each input: input x gradient of the explained output's log-probability (summed over the
  embedding), and leave-one-out erasure (the drop in that log-probability when the input is removed);
  the drop when the *most attended* input is removed against a *random* one (and, for a decision, how
  often it flips); and the total variation distance between the output distribution and the one with
  the attention weights permuted across the inputs (:func:`attnapps.attention.intervene`).
* **Alignment** -- alignment error rate against gold word alignments (:func:`alignment_error_rate`,
  Och & Ney 2003), for translation data that provides them.

A task explains its outputs through :class:`Probe` objects, one per (example, explained output).
"""

from __future__ import annotations

import math
import random
from typing import Protocol, Sequence

import torch
from torch import Tensor

# metrics.json keys (attnapps.outputs): present when diag.examples > 0, as by default ("*": every such run)
METRIC_KEYS: dict[str, str] = {
    "diag.examples": "* test examples explained (`diag.examples=`, drawn with the run's seed)",
    "diag.outputs": "* outputs explained (a sequence task explains several tokens of each example)",
    "diag.seconds": "* seconds the diagnostics took",
    "diag.time_fraction": "* those seconds as a fraction of the training time",
    "diag.entropy": "* concentration: mean normalised entropy of the attention over the inputs (0 = on one input)",
    "diag.top1": "* concentration: mean weight of the most attended input",
    "diag.top3": "* concentration: mean weight of the three most attended inputs",
    "diag.tau_grad": "* Kendall's tau-b between the attention and input x gradient importance (Jain & Wallace 2019)",
    "diag.tau_loo": "* Kendall's tau-b between the attention and leave-one-out erasure importance",
    "diag.erase_max": "* drop in log P(output) when the most attended input is removed",
    "diag.erase_random": "* drop in log P(output) when a random input is removed",
    "diag.flip_max": "a decision (`Diagnoser.diag_decision`): the share of decisions flipped by removing the most "
                     "attended input",
    "diag.flip_random": "a decision: the share flipped by removing a random input",
    "diag.permute_tvd": "* total variation distance between the output and the output with the attention weights "
                        "permuted across the inputs (`diag.permutations=` permutations)",
}


# ---------------------------------------------------------------------------------- measures
def normalised_entropy(w: Tensor) -> float:
    """``H(w) / log n`` of a distribution over ``n`` inputs: 0 = all on one input, 1 = uniform.

    >>> normalised_entropy(torch.tensor([0.25, 0.25, 0.25, 0.25])), normalised_entropy(torch.tensor([1.0, 0, 0, 0]))
    (1.0, 0.0)
    """
    w = w.double().clamp(min=0)
    w = w / w.sum().clamp(min=1e-12)
    n = w.numel()
    if n < 2:
        return 0.0
    h = -(w[w > 0] * w[w > 0].log()).sum()
    return float(h / math.log(n)) + 0.0  # (+ 0.0: never -0.0)


def top_k_mass(w: Tensor, k: int) -> float:
    """The summed weight of the ``k`` largest entries (all of them when fewer)."""
    return float(w.double().topk(min(k, w.numel())).values.sum())


def kendall_tau(a: Sequence[float] | Tensor, b: Sequence[float] | Tensor) -> float:
    """Kendall's tau-b between two score vectors (ties handled as scipy's ``kendalltau``); NaN when either
    is constant or shorter than 2."""
    a, b = torch.as_tensor(a, dtype=torch.float64).flatten(), torch.as_tensor(b, dtype=torch.float64).flatten()
    if a.numel() < 2:
        return float("nan")
    da = torch.sign(a.unsqueeze(0) - a.unsqueeze(1))  # (n, n)
    db = torch.sign(b.unsqueeze(0) - b.unsqueeze(1))
    upper = torch.triu(torch.ones_like(da, dtype=torch.bool), diagonal=1)
    s = float((da * db)[upper].sum())
    n_a, n_b = float((da[upper] != 0).sum()), float((db[upper] != 0).sum())
    if n_a == 0 or n_b == 0:
        return float("nan")
    return s / math.sqrt(n_a * n_b)


def total_variation(p: Tensor, q: Tensor) -> float:
    """``0.5 * sum |p - q|`` of two distributions."""
    return float(0.5 * (p.double() - q.double()).abs().sum())


def read_alignments(path, line_count: int | None = None) -> list[tuple[set, set]]:
    """Pharaoh-format gold alignments, one line per sentence pair: ``i-j`` sure, ``i?j`` possible links
    (0-based source word ``i``, target word ``j``). Returns ``(sure, possible)`` per line, where possible
    includes sure (as Och & Ney's P contains S)."""
    from attnapps.data.files import read_lines
    from attnapps.errors import DataError

    out = []
    for n, line in read_lines(path):
        sure, possible = set(), set()
        for link in line.split():
            sep = "-" if "-" in link else "?" if "?" in link else None
            i, _, j = link.partition(sep) if sep else ("", "", "")
            if not (i.isdigit() and j.isdigit()):
                raise DataError(path, n, f"bad alignment link {link!r} (expected i-j or i?j)")
            (sure if sep == "-" else possible).add((int(i), int(j)))
        out.append((sure, possible | sure))
    if line_count is not None and len(out) != line_count:
        raise DataError(path, None, f"{len(out)} alignment lines for {line_count} sentence pairs")
    return out


def alignment_error_rate(predicted: Sequence[set], gold: Sequence[tuple[set, set]]) -> float:
    """AER = 1 - (|A ∩ S| + |A ∩ P|) / (|A| + |S|) over a corpus (Och & Ney 2003)."""
    a_s = a_p = a = s = 0
    for links, (sure, possible) in zip(predicted, gold):
        a_s += len(links & sure)
        a_p += len(links & possible)
        a += len(links)
        s += len(sure)
    return 1.0 - (a_s + a_p) / max(a + s, 1)


# ---------------------------------------------------------------------------------- probes
class Probe(Protocol):
    """One explained output of one example: ``n`` inputs (tokens, regions), the attention over them, the
    output distribution (optionally with input ``erase`` removed, or with the attention weights passed
    through ``intervention``), the produced output's index, and input x gradient importance."""

    n: int

    def attention(self) -> Tensor: ...  # (n,)

    def output(self, erase: int | None = None, intervention=None) -> Tensor: ...  # (classes or vocab,) probabilities

    def target(self) -> int: ...

    def saliency(self) -> Tensor: ...  # (n,)


def permutation_of(n: int, rng: random.Random):
    """A function permuting the last dim's first ``n`` entries (the inputs) of attention weights, the
    same way for every query and head; later entries (padding) stay."""
    order = list(range(n))
    while n > 1 and order == list(range(n)):
        rng.shuffle(order)
    index = torch.tensor(order)

    def permute(w: Tensor) -> Tensor:
        return torch.cat([w[..., index.to(w.device)], w[..., n:]], -1)
    return permute


def diagnose(probes: Sequence[Probe], seed: int = 0, decision: bool = False, permutations: int = 3) -> dict:
    """The ``diag.*`` numbers over ``probes`` (each with ``n`` >= 2 inputs to be counted); ``decision``:
    the output is a decision (classification), so erasure also reports flip rates."""
    rng, shared = random.Random(seed), {}
    rows: dict[str, list[float]] = {k: [] for k in ("entropy", "top1", "top3", "tau_grad", "tau_loo", "erase_max",
                                                    "erase_random", "flip_max", "flip_random", "permute_tvd")}
    for probe in probes:
        if probe.n < 2:
            continue
        w = probe.attention().detach().double().cpu()
        rows["entropy"].append(normalised_entropy(w))
        rows["top1"].append(top_k_mass(w, 1))
        rows["top3"].append(top_k_mass(w, 3))
        full = probe.output().detach().double().cpu()
        y = probe.target()
        log_p = math.log(max(float(full[y]), 1e-30))
        erased = [probe.output(erase=i).detach().double().cpu() for i in range(probe.n)]
        drops = torch.tensor([log_p - math.log(max(float(o[y]), 1e-30)) for o in erased])  # (n,)
        rows["tau_loo"].append(kendall_tau(w, drops))
        rows["tau_grad"].append(kendall_tau(w, probe.saliency().detach().double().cpu()))
        top, other = int(w.argmax()), rng.randrange(probe.n)
        rows["erase_max"].append(float(drops[top]))
        rows["erase_random"].append(float(drops[other]))
        if decision:
            rows["flip_max"].append(float(int(erased[top].argmax()) != y))
            rows["flip_random"].append(float(int(erased[other].argmax()) != y))
        if not getattr(probe, "can_permute", True):
            continue
        group = getattr(probe, "group", None)  # probes of one example share its permutations (and the
        perms = (shared.setdefault(group, [permutation_of(probe.n, rng) for _ in range(permutations)])  # task
                 if group is not None else [permutation_of(probe.n, rng) for _ in range(permutations)])  # may cache)
        tvds = [total_variation(full, probe.output(intervention=perm).detach().cpu()) for perm in perms]
        rows["permute_tvd"].append(sum(tvds) / len(tvds))
    out = {"diag.outputs": float(len(rows["entropy"]))}  # explained outputs (a sequence task: one per token)
    for key, values in rows.items():
        finite = [v for v in values if math.isfinite(v)]
        if finite:
            out[f"diag.{key}"] = sum(finite) / len(finite)
    return out


class EmbeddingGrad:
    """Records the output of an ``nn.Embedding`` (the first call inside the ``with``, or all of them) with
    its gradient kept, for input x gradient saliency: ``(x * x.grad).sum(-1)``."""

    def __init__(self, module: torch.nn.Module):
        self.module, self.outputs, self.handle = module, [], None

    def __enter__(self):
        def hook(_, __, out):
            out.retain_grad()
            self.outputs.append(out)
        self.handle = self.module.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def saliency(self, call: int = 0) -> Tensor:
        x = self.outputs[call]
        return (x * x.grad).sum(-1).detach()  # (batch, len)


class ModelProbe:
    """A :class:`Probe` from the pieces a task knows: ``run(inputs) -> probabilities`` of the explained
    output for a list of inputs (erasure removes one), the attention over them, the produced output,
    the attention modules whose weights the permutation test shuffles, and ``saliency()``. Probes with
    the same ``group`` (the outputs of one example) get the same permutations, so ``run`` may cache
    one teacher-forced pass per permutation."""

    def __init__(self, inputs: list, run, attention: Tensor, target: int, modules: Sequence, saliency=None,
                 group=None):
        self.inputs, self.run, self._attention, self._target = list(inputs), run, attention, target
        self.modules, self._saliency, self.n, self.group = list(modules), saliency, len(inputs), group

    def attention(self) -> Tensor:
        return self._attention

    def target(self) -> int:
        return self._target

    @property
    def can_permute(self) -> bool:
        """Whether one module's weights over these inputs can be permuted (a hierarchical model's cannot)."""
        return bool(self.modules)

    @torch.no_grad()
    def output(self, erase: int | None = None, intervention=None) -> Tensor:
        inputs = self.inputs if erase is None else self.inputs[:erase] + self.inputs[erase + 1:]
        if intervention is None:
            return self.run(inputs)
        from contextlib import ExitStack

        from attnapps.attention import intervene

        with ExitStack() as stack:
            for module in self.modules:
                stack.enter_context(intervene(module, intervention))
            return self.run(inputs)

    def saliency(self) -> Tensor:
        return self._saliency() if self._saliency is not None else torch.full((self.n,), float("nan"))
