"""The pointing game (Zhou et al. 2016, applied to captions): on data with object boxes, does the
attention peak of each generated object word fall on that object?"""

from __future__ import annotations

import math


def pointing_game(items, words, attns) -> dict | None:
    """``items`` (with ``objects``), their generated ``words`` and attention ``(len, regions)``: for each
    generated object word (a shape noun, with its colour adjective when there is one), does the
    attention peak's grid cell overlap that object? Also the chance level: the fraction of cells
    overlapping it. None when no item has objects."""
    if not any(it.objects for it in items):
        return None
    nouns = {o["shape"] for it in items for o in it.objects}
    adjectives = {o["colour"] for it in items for o in it.objects}
    hits = total = hallucinated = 0
    chance = 0.0
    for it, ws, att in zip(items, words, attns):
        if att is None or not it.objects:
            continue
        k = int(round(math.sqrt(att.size(-1))))
        cw, ch = (it.width or 1) / k, (it.height or 1) / k
        for j, w in enumerate(ws):
            if w not in nouns or j >= att.size(0):
                continue
            cands = [o for o in it.objects if o["shape"] == w]
            if j > 0 and ws[j - 1] in adjectives:
                cands = [o for o in cands if o["colour"] == ws[j - 1]]
            if not cands:
                hallucinated += 1
                continue

            def overlaps(r, c):
                x0, y0, x1, y1 = c * cw, r * ch, (c + 1) * cw, (r + 1) * ch
                return any(b[0] < x1 and x0 < b[2] and b[1] < y1 and y0 < b[3]
                           for b in (o["bbox"] for o in cands))

            peak = int(att[j].argmax())
            hits += overlaps(peak // k, peak % k)
            chance += sum(overlaps(r, c) for r in range(k) for c in range(k)) / (k * k)
            total += 1
    return {"accuracy": hits / max(total, 1), "chance": chance / max(total, 1), "words": total,
            "hallucinated": hallucinated}
