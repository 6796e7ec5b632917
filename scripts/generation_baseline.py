"""The practitioner's baseline for ``task=generation``: a character n-gram language model with
interpolated Kneser-Ney smoothing (Chen & Goodman 1998; one absolute discount for every order), fitted
on the training text, its order and discount chosen on **valid** (as carefully as the model beside it),
scored in bits per character on valid and test -- the same splits and the same denominator (characters
of the scored text) as the task's ``test.bpc``.

    python scripts/generation_baseline.py [--path DATA] [--format txt|wikitext] [--orders 3,4,5,6,7,8]
                                          [--discounts 0.5,0.75,0.9,1.0]

Writes nothing; prints a Markdown table. Pure Python: about a minute per order on 3.6 M characters.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnapps_tasks.generation.data import load_corpus  # noqa: E402

class KneserNey:
    """Interpolated Kneser-Ney over characters, orders 1..n; unseen characters share a uniform floor."""

    def __init__(self, text: str, n: int, discount: float = 0.75):
        self.n, self.discount = n, discount  # the counts do not depend on the discount: change it freely
        self.vocab = len(set(text)) + 1  # + one slot for characters never seen in training
        raw = Counter(text[i:i + n] for i in range(len(text) - n + 1))
        self.tables = {n: raw}  # order n: raw counts; lower orders: continuation counts N1+(. g)
        for k in range(n - 1, 0, -1):
            longer = self.tables[k + 1] if k + 1 < n else Counter(text[i:i + k + 1] for i in range(len(text) - k))
            cont = Counter()
            for gram in longer:
                cont[gram[1:]] += 1
            self.tables[k] = cont
        self.total, self.types = {}, {}  # per order: context -> sum of counts, number of distinct next chars
        for k, table in self.tables.items():
            total, types = Counter(), Counter()
            for gram, c in table.items():
                total[gram[:-1]] += c
                types[gram[:-1]] += 1
            self.total[k], self.types[k] = total, types

    def prob(self, history: str, c: str) -> float:
        p = 1.0 / self.vocab
        for k in range(1, len(history) + 2):  # lowest order first, each interpolated with the one below
            h = history[len(history) - (k - 1):] if k > 1 else ""
            tot = self.total[k].get(h, 0)
            if tot:
                d = self.discount
                p = max(self.tables[k].get(h + c, 0) - d, 0) / tot + d * self.types[k][h] / tot * p
        return p

    def bits_per_char(self, text: str) -> float:
        bits = 0.0
        for i, c in enumerate(text):
            bits -= math.log2(self.prob(text[max(0, i - self.n + 1):i], c))
        return bits / max(1, len(text))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", default="")
    ap.add_argument("--format", default="txt")
    ap.add_argument("--orders", default="3,4,5,6,7,8")
    ap.add_argument("--discounts", default="0.5,0.75,0.9,1.0")
    args = ap.parse_args(argv)
    texts, _, source = load_corpus(args.path, args.format)
    print(f"data: {source}; characters train {len(texts['train']):,}, valid {len(texts['valid']):,}, "
          f"test {len(texts['test']):,}\n", file=sys.stderr)
    discounts = [float(x) for x in args.discounts.split(",")]
    rows, best = [], None
    for n in (int(x) for x in args.orders.split(",")):
        t0 = time.time()
        lm = KneserNey(texts["train"], n)
        scores = {}
        for d in discounts:  # one count, several discounts
            lm.discount = d
            scores[d] = lm.bits_per_char(texts["valid"])
        d = min(discounts, key=lambda x: scores[x])
        rows.append((n, d, scores[d]))
        print(f"order {n}: valid " + ", ".join(f"{scores[x]:.3f} bpc (discount {x:g})" for x in discounts)
              + f" ({time.time() - t0:.0f} s)", file=sys.stderr)
        if best is None or scores[d] < best[2]:
            best = (n, d, scores[d], lm)
    n, d, valid, lm = best
    lm.discount = d
    print("| character n-gram LM, interpolated Kneser-Ney | discount (best on valid) | valid bpc | test bpc |\n"
          "|---|---|---|---|")
    for order, disc, v in rows:
        test = f"{lm.bits_per_char(texts['test']):.3f}" if order == n else "—"
        print(f"| order {order}{' (chosen on valid)' if order == n else ''} | {disc:g} | {v:.3f} | {test} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
