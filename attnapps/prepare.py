"""``python -m attnapps.prepare task=NAME [key=value ...]``: read, tokenize and encode a task's data once.

The same keys as ``attnapps.run`` (``data.path=``, ``tokenizer.*``, ``data.cache_dir=``, ...). What a run
does first -- read the files, fit the tokenizer, encode every split -- is done here and kept as a prepared
store (:mod:`attnapps.data.prepared`) under ``<data.cache_dir>/prepared/``; every later run with the same
data and options, and every process of a ``torchrun`` job, opens it read-only instead (its report says
"cache hit"). Preparing a large corpus before a multi-process job keeps the processes from waiting on it.
Prints whether the store was found or built, in how long, where it is and each split's size.
"""

from __future__ import annotations

import sys

from attnapps.errors import AttnappsError


def prepare(cfg) -> dict:
    """Prepare ``cfg``'s data; ``{"info": open_or_build's info, "sizes": {split: examples}}``."""
    from attnapps import provenance
    from attnapps.errors import ConfigError
    from attnapps.task import get_task

    task_cls = get_task(cfg.task_name)
    task_cls.check_config(cfg)
    task = task_cls(cfg)
    provenance.start_recording()
    data = task.load_data()
    if task.prepared_info is None:
        raise ConfigError(f"task={cfg.task_name} reads its data at the start of each run: it has no prepared store")
    return {"info": task.prepared_info, "sizes": {split: len(examples) for split, examples in data.items()}}


def main(argv: list[str] | None = None) -> int:
    from attnapps.data.prepared import describe
    from attnapps.run import CONFIG_NAME, _register_primary, _user_overrides, expand_aliases, print_help, validate

    argv = expand_aliases(sys.argv[1:] if argv is None else argv)
    try:
        _register_primary()
        if "--help" in argv or "-h" in argv:
            print(__doc__.strip().splitlines()[0] + "\n")
            print_help(argv)
            return 0
        validate(argv)
        from hydra import compose, initialize

        with initialize(version_base=None, config_path=None):
            cfg = compose(config_name=CONFIG_NAME, overrides=_user_overrides(argv))
        result = prepare(cfg)
    except AttnappsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(describe(result["info"]).replace("`", ""))
    print("examples: " + ", ".join(f"{split} {n:,}" for split, n in result["sizes"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
