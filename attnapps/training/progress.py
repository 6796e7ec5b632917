"""The tqdm progress bar: updates done, or under ``trainer.max_minutes`` elapsed / budgeted seconds."""

from __future__ import annotations


class ProgressBar:
    def __init__(self, bar, progress, timed: bool):
        self.bar, self.progress, self.timed = bar, progress, timed

    @property
    def total(self):
        return self.bar.total

    def advance(self, out: dict, seconds: float, unit: str) -> None:
        p, bar = self.progress, self.bar
        bar.update(min(p.elapsed, bar.total) - bar.n if self.timed else 1)  # evaluation time too
        bar.set_postfix(loss=f"{out['loss']:.3f}", step=p.step, epoch=p.epoch, refresh=False,
                        **{f"{unit}/s": f"{out['count'] / max(seconds, 1e-9):.0f}"})

    def close(self) -> None:
        self.bar.close()


def progress_bar(tc, progress, name: str, steps_per_epoch: int) -> ProgressBar:
    from tqdm.auto import tqdm

    if tc.max_minutes > 0:
        budget = round(60 * tc.max_minutes)
        bar = tqdm(total=budget, initial=min(round(progress.elapsed), budget), unit="s",
                   desc=f"train {name} (time budget)", dynamic_ncols=True, mininterval=1.0,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s {postfix}")
    else:
        bar = tqdm(total=tc.max_steps or tc.max_epochs * steps_per_epoch or None, initial=progress.step,
                   desc=f"train {name}", dynamic_ncols=True, mininterval=1.0)
    return ProgressBar(bar, progress, tc.max_minutes > 0)
