"""Standard datasets by name, through Hugging Face ``datasets`` (the optional extra ``attnapps[hf]``).

``data.hf=NAME`` takes what ``datasets`` can open -- a dataset of the Hub (``imdb``, ``wmt14`` with
``data.hf_config=de-en``; from the local Hugging Face cache, or downloaded when online), a folder of
``json``/``jsonl``/``csv``/``parquet``/``txt`` files whose names say their split (``train.jsonl``,
``validation.csv``, ...), or a folder written by ``save_to_disk`` -- and exports it once, row by row (the
rows are read from Arrow's memory-mapped files: memory stays flat), into the task's own file layout under
``<data.cache_dir>/hub/``: the task then reads that folder as it reads any ``data.path``, through its
prepared store. The export is a store of :mod:`attnapps.data.prepared` (built in a temporary folder, renamed
into place, under a lock), keyed by the dataset's fingerprints, the contents of local files and the options.

* ``data.hf_splits``: which of the dataset's splits are ``train``, ``valid`` and ``test``
  (``"train=train,valid=validation,test=test"``); by default ``train``, the first of
  ``validation``/``valid``/``dev``, and ``test``. Without a valid split, 5% of train (at most 5,000 rows,
  drawn with the run's seed) becomes one.
* ``data.hf_columns``: ``NAME=COLUMN`` pairs naming the dataset's columns for what the task reads (each
  task's help lists its names and defaults); a ``COLUMN`` may be a path into a dict column
  (``pair.de``); class-label columns give their names, not their numbers.

Tasks take part with :meth:`attnapps.task.Task.write_hub`; the core never knows what a task reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from attnapps.errors import ConfigError

VALID_NAMES = ("validation", "valid", "dev")
CARVE_FRACTION, CARVE_MAX = 0.05, 5000
PAIR_KEYS = ("data.hf_splits", "data.hf_columns")  # NAME=VALUE,... values: quoted for Hydra by attnapps.run
LAYOUT = 1  # bumped when an export's layout changes: older exports are made again

HELP = {
    "hf": "a Hugging Face dataset, exported once into this task's files under <cache_dir>/hub: a Hub name "
          "(e.g. {example}; from the local HF cache, or downloaded when online), a folder of json/csv/parquet/txt "
          "files named by split, or a save_to_disk folder (needs `pip install attnapps[hf]`); \"\" = data.path",
    "hf_config": "the dataset's configuration (e.g. {config})",
    "hf_splits": "which of its splits are train, valid, test: 'train=train,valid=validation,test=test'; \"\" = "
                 "train, the first of validation/valid/dev (else 5% of train), test",
    "hf_columns": "NAME=COLUMN pairs naming its columns ({columns}); COLUMN may be a path into a dict column "
                  "(pair.de)",
}


def help_text(key: str, **fill) -> str:
    """The help of a ``data.hf*`` key, with the task's own example filled in."""
    return HELP[key].format(**fill)


def pairs(value: str, key: str) -> dict[str, str]:
    """``"a=b,c=d"`` -> ``{"a": "b", "c": "d"}``; anything else is one error naming ``key``."""
    out = {}
    for item in filter(None, (p.strip() for p in str(value or "").split(","))):
        name, eq, target = item.partition("=")
        if not eq or not name.strip() or not target.strip():
            raise ConfigError(f"bad value for config key '{key}': {value!r} must be NAME=VALUE pairs separated by "
                              "commas")
        out[name.strip()] = target.strip()
    return out


def _datasets():
    try:
        import datasets
    except ImportError:
        raise ConfigError("data.hf= needs the optional Hugging Face datasets package: pip install 'attnapps[hf]'") \
            from None
    return datasets


def _is_saved(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def load(name: str, config: str = "", splits: str = "", seed: int = 0) -> dict[str, Any]:
    """``{"train", "valid", "test"}`` -> ``datasets.Dataset`` (``test`` may be missing where the dataset has
    none); every failure to open it is one :class:`ConfigError` line."""
    return _choose(_open(name, config), name, splits, seed)[0]


def _open(name: str, config: str):
    datasets = _datasets()
    path = Path(name).expanduser()
    try:
        if _is_saved(path):
            found = datasets.load_from_disk(str(path))
        else:
            found = datasets.load_dataset(str(path) if path.is_dir() else name, config or None)
    except Exception as e:  # the library's errors (missing, offline, bad files) as one line
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        offline = "" if path.is_dir() else (" (offline, a Hub dataset must already be in the local Hugging Face "
                                            "cache: HF_DATASETS_OFFLINE=1)")
        raise ConfigError(f"data.hf={name}: cannot open it: {type(e).__name__}: {reason[:300]}{offline}") from None
    if isinstance(found, datasets.Dataset):  # one split saved alone
        found = {"train": found}
    return found


def _choose(found, name: str, splits: str, seed: int) -> tuple[dict[str, Any], bool]:
    """Our splits from the dataset's, and whether valid was carved from train (then the seed matters)."""
    available = list(found)
    wanted = pairs(splits, "data.hf_splits")
    unknown = set(wanted) - {"train", "valid", "test"}
    if unknown:
        raise ConfigError(f"bad value for config key 'data.hf_splits': {sorted(unknown)[0]!r} is not train, valid "
                          "or test")
    for ours, theirs in wanted.items():
        if theirs not in found:
            raise ConfigError(f"data.hf_splits: {ours}={theirs}, but {name} has the splits {', '.join(available)}")
    chosen = {"train": wanted.get("train", "train"),
              "valid": wanted.get("valid") or next((v for v in VALID_NAMES if v in found), None),
              "test": wanted.get("test", "test" if "test" in found else None)}
    if chosen["train"] not in found:
        raise ConfigError(f"data.hf={name} has no split 'train' (it has {', '.join(available)}): name one with "
                          "data.hf_splits=train=NAME,...")
    out = {ours: found[theirs] for ours, theirs in chosen.items() if theirs is not None}
    carved = "valid" not in out
    if carved:  # from train, drawn with the seed
        n = len(out["train"])
        size = max(1, min(CARVE_MAX, int(n * CARVE_FRACTION)))
        if n < 2:
            raise ConfigError(f"data.hf={name}: its train split has {n} row(s), too few to carve a valid split from")
        cut = out["train"].train_test_split(test_size=size, seed=seed, shuffle=True)
        out["train"], out["valid"] = cut["train"], cut["test"]
    return out, carved


def _resolve(row: dict, column: str):
    value = row
    for part in column.split("."):
        value = value[part] if isinstance(value, dict) and part in value else None
    return value


def columns_of(dataset) -> list[str]:
    """The dataset's column names, with the keys of dict columns as ``column.key``."""
    out = []
    for name, feature in dataset.features.items():
        out.append(name)
        languages = getattr(feature, "languages", None)  # datasets.Translation
        keys = list(languages) if languages else list(feature) if isinstance(feature, dict) else []
        out += [f"{name}.{k}" for k in keys]
    return out


def rows(dataset, columns: dict[str, str], name: str = "") -> Iterator[dict[str, Any]]:
    """The dataset's rows as ``{our name: value}`` for ``columns`` (our name -> its column, dotted into dict
    columns); class labels as their names. A column it lacks is one error naming the columns it has."""
    have = columns_of(dataset)
    for ours, theirs in columns.items():
        if theirs not in have:
            raise ConfigError(f"data.hf_columns: {ours}={theirs}, but {name or 'the dataset'} has the columns "
                              f"{', '.join(have)}")
    names = {ours: dataset.features[theirs].int2str for ours, theirs in columns.items()
             if theirs in dataset.features and hasattr(dataset.features[theirs], "int2str")}
    for row in dataset:
        out = {ours: _resolve(row, theirs) for ours, theirs in columns.items()}
        for ours, to_name in names.items():
            if isinstance(out[ours], int) and out[ours] >= 0:
                out[ours] = to_name(out[ours])
        yield out


def export(name: str, config: str, splits: str, columns: str, seed: int, cache_dir: str, task: str,
           write: Callable[[dict, dict, Path], dict], more: dict | None = None) -> tuple[str, dict, dict]:
    """Export ``data.hf=name`` once into the task's layout: ``write(datasets, columns, folder) -> overrides``
    writes the files (``datasets`` as :func:`load` gives them, ``columns`` the user's ``NAME=COLUMN``
    choices) and returns the config values that read them (``{"path": ...}`` is added). Returns
    ``(folder, overrides, info)`` -- ``info`` as :func:`attnapps.data.prepared.open_or_build` gives it;
    ``more``: the other config values ``write`` reads (part of the export's key)."""
    from attnapps.data import prepared
    from attnapps.data.files import cache_root

    found, carved = _choose(_open(name, config), name, splits, seed)
    path = Path(name).expanduser()
    local = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    options = {"hf": name if not path.is_dir() else "local", "config": config, "splits": splits,
               "columns": columns, "layout": LAYOUT, "task": task,
               # a Hub dataset by its fingerprints; local files by their contents (store_key), not paths or times
               "fingerprints": {} if local else {k: getattr(v, "_fingerprint", None) for k, v in found.items()},
               "seed": seed if carved else None, "rows": {k: len(v) for k, v in found.items()}, "more": more or {}}
    key = prepared.store_key(f"{task}-hub", local, options)
    chosen = pairs(columns, "data.hf_columns")

    def build(writer):
        writer.notes["config"] = write(found, chosen, writer.directory)

    store, info = prepared.open_or_build(cache_root(cache_dir) / "hub", key, build)
    return str(store.directory), dict(store.notes["config"]), info


def apply(cfg, task) -> dict | None:
    """With ``data.hf`` set: export it (:func:`export`, the task's :meth:`write_hub`) and point the run's
    ``data`` config at the export (``data.path`` and what the task's writer returned). None otherwise."""
    from omegaconf import OmegaConf, open_dict

    d = OmegaConf.select(cfg, "data")
    if d is None or not OmegaConf.select(cfg, "data.hf", default=""):
        return None
    folder, overrides, info = export(str(d.hf), str(d.get("hf_config", "") or ""), str(d.get("hf_splits", "") or ""),
                                     str(d.get("hf_columns", "") or ""), int(cfg.seed), str(d.get("cache_dir", "") or ""),
                                     task.name, task.write_hub,
                                     {key: OmegaConf.select(cfg, key) for key in task.hub_keys})
    with open_dict(d):
        for key, value in {**overrides, "path": folder}.items():
            d[key] = value
    return {**info, "folder": folder}


def text_line(value) -> str:
    """One line of a line-based file: line breaks and tabs inside it become spaces."""
    return " ".join(str(value if value is not None else "").replace("\t", " ").splitlines()).strip()


def safe_name(value: str) -> str:
    """A language or split name usable in a file name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in value) or "x"

