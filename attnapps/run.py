"""``python -m attnapps.run task=NAME [key=value ...]``: train, evaluate and report one task.

Hydra composes the config (``task=`` picks the task's structured config); ``-m`` runs a sweep;
``hydra.run.dir=PATH`` chooses the run directory. Before Hydra starts, the overrides are checked
here so that a wrong key or type is reported as one line naming the key. Under ``torchrun`` every
process runs this; rank 0 picks the run directory and is the only one to write files.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from attnapps.config import describe, hydra_defaults
from attnapps.errors import AttnappsError, ConfigError

CONFIG_NAME = "attnapps"


def _register_primary() -> None:
    from hydra.core.config_store import ConfigStore

    from attnapps.task import default_task

    ConfigStore.instance().store(name=CONFIG_NAME, node=hydra_defaults(default_task()))


def _user_overrides(argv: list[str]) -> list[str]:
    return [a for a in argv if not a.startswith("-") and "=" in a
            and not a.lstrip("+~").startswith(("hydra.", "hydra/"))]


def _task_of(overrides: list[str]) -> str:
    for o in overrides:
        if o.startswith("task="):
            return o.split("=", 1)[1]
    from attnapps.task import default_task

    return default_task()


def _explain(exc: BaseException, task: str) -> str:
    """One line from a Hydra/OmegaConf composition error, naming the key."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None):
            if isinstance(e, (ConfigKeyError, ConfigAttributeError)):
                return (f"unknown config key '{e.full_key}' for task={task} "
                        f"(see: python -m attnapps.run task={task} --help)")
            msg = str(getattr(e, "msg", e)).splitlines()[0]
            m = re.fullmatch(r"Invalid value '(.*)', expected one of \[(.*)\]", msg)
            if m:  # a Choice field
                return f"bad value for config key '{e.full_key}': {m.group(1)!r}; choose one of {m.group(2)}"
            return f"bad value for config key '{e.full_key}': {msg}"
        e = e.__cause__ or e.__context__
    return str(exc).splitlines()[0]


def sweep_values(override) -> list[str]:
    """The values of one override to check: its value, each value of a choice or range sweep, the two ends
    of an interval (what a sweeper such as Optuna draws from, ``interval(0.0001,0.01)``)."""
    from hydra.core.override_parser.types import IntervalSweep

    if not override.is_sweep_override():
        return [override.get_value_element_as_str()]
    value = override.value()
    if isinstance(value, IntervalSweep):
        return [repr(value.start), repr(value.end)]
    return list(override.sweep_string_iterator())


def validate(argv: list[str]) -> None:
    """Compose the config once per sweep value to reject bad keys/values before any run starts."""
    from hydra import compose, initialize
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from attnapps.task import get_task, list_tasks

    overrides = _user_overrides(argv)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as e:
        raise ConfigError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None
    choices = []  # per override: (key, [values]); sweeps have several
    for o in parsed:
        key = o.get_key_element()
        values = sweep_values(o)
        if key.lstrip("+~") == "task":
            for v in values:
                if v not in list_tasks():
                    raise ConfigError(f"unknown task {v!r}; choose one of: {', '.join(list_tasks())}")
        choices.append((key, values))
    base = [f"{k}={vs[0]}" for k, vs in choices]
    variants = [base] + [base[:i] + [f"{k}={v}"] + base[i + 1:]  # each sweep value checked once
                         for i, (k, vs) in enumerate(choices) for v in vs[1:]]
    with initialize(version_base=None, config_path=None):
        for ov in variants:
            try:
                cfg = compose(config_name=CONFIG_NAME, overrides=ov)
                from omegaconf import OmegaConf

                OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
            except Exception as e:
                raise ConfigError(_explain(e, _task_of(ov))) from None
            get_task(cfg.task_name).check_config(cfg)  # value ranges and keys that must agree, before any data


def print_help(argv: list[str]) -> None:
    from attnapps.task import default_task, get_task, list_tasks

    task = _task_of(_user_overrides(argv))
    print(__doc__.strip().splitlines()[0])
    print("\nTasks: " + ", ".join(list_tasks()) + f"   (default: {default_task()})")
    print(f"\nOptions of task={task} (key=value; defaults shown):")
    for key, typ, default, help_text in describe(get_task(task).config_class):
        if key != "task_name":
            print(f"  {key}={default}   ({typ})" + (f"\n      {help_text}" if help_text else ""))
    print("\nHydra: -m (sweep over a,b,c values), hydra.run.dir=PATH, hydra.sweep.dir=PATH; "
          "--hydra-help for Hydra's own help.")


def _hydra_main():
    import hydra
    from hydra.core.hydra_config import HydraConfig

    @hydra.main(version_base=None, config_path=None, config_name=CONFIG_NAME)
    def main(cfg) -> float | None:
        from attnapps.task import get_task
        from attnapps.training import distributed as dist

        run_dir = HydraConfig.get().runtime.output_dir
        if dist.launched_by_torchrun():
            import torch
            import torch.distributed as tdist

            if dist.restarts_share_the_store() and os.environ.get("RANK", "0") == "0" and dist.restart_count() == 0:
                print("warning: torchrun --max-restarts with its rendezvous store shared with the workers: a "
                      "restarted group may fail to connect (PyTorch issue #135712); launch with "
                      "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1", file=sys.stderr)

            if not tdist.is_initialized():
                tdist.init_process_group("nccl" if torch.cuda.is_available() and cfg.trainer.device != "cpu"
                                         else "gloo")
            run_dir = dist.broadcast_object(run_dir)
            record = dist.elastic_record()
            if dist.restart_count() == 0 and record is not None and tdist.get_rank() == 0:
                record.write_text(os.path.abspath(run_dir))  # a restarted attempt goes on in this directory
        try:
            metrics = train(cfg, run_dir)
        except AttnappsError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if metrics is not None:
            shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith("test.")}
            print(f"test metrics: {shown}")
            print(f"report: {os.path.join(run_dir, 'report.md')}")
            return metrics.get(f"valid.{get_task(cfg.task_name).primary_metric}")
        return None

    return main


def train(cfg, run_dir, task_cls=None) -> dict | None:
    """Train one run and write its outputs; the metrics (rank 0) or None (other ranks).

    The run directory gets ``config.yaml`` (written by the trainer once the task has filled every "auto"
    value, from the config and from the data: the config the model was built from), ``log.csv`` and
    ``checkpoints/`` while training, then ``metrics.json``, ``provenance.json`` and ``report.md`` (+ ``plots/``)."""
    from attnapps.task import get_task
    from attnapps.training import Trainer

    trainer = Trainer(task_cls or get_task(cfg.task_name), cfg, run_dir)
    result = trainer.run()
    if result is None:
        return None
    from attnapps.training.loggers import finish_loggers

    try:
        write_outputs(run_dir, cfg, result)
    finally:  # the trackers get the final metrics, the report and the plots, then close
        finish_loggers(result.loggers, result.metrics, Path(run_dir))
    return result.metrics


def write_outputs(run_dir, cfg, result) -> None:
    """``metrics.json``, ``provenance.json`` and the report of a finished run (:class:`RunResult`)."""
    import json

    from attnapps import provenance
    from attnapps.report import write_report

    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(result.metrics, f, indent=2, sort_keys=True)
    prov = provenance.collect(result.device, result.data_fingerprints)
    with open(os.path.join(run_dir, "provenance.json"), "w") as f:
        json.dump(prov, f, indent=2)
    write_report(run_dir, cfg, result.metrics, result.task, result.model, provenance=prov, results=result.results)


def check_run_dir(argv: list[str]) -> None:
    """A run directory that cannot be created is one line before Hydra starts (rank 0 only)."""
    if int(os.environ.get("RANK", "0")) != 0 or "-m" in argv or "--multirun" in argv:
        return
    given = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")]
    target = given[-1] if given else "runs"
    key = "hydra.run.dir" if given else "the default run directory (runs/ in the current folder)"
    try:
        os.makedirs(target, exist_ok=True)
        if not os.access(target, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        reason = "exists and is not a directory" if isinstance(e, (FileExistsError, NotADirectoryError)) else e.strerror
        raise ConfigError(f"{key}={target}: cannot create the run directory ({reason})") from None


def expand_aliases(argv: list[str]) -> list[str]:
    """``KEY=value`` for a short name the chosen task declares (``Task.aliases``, e.g. ``tokenizer=X`` for
    ``tokenizer.kind=X``) -> the full key; a key the task renamed (``Task.renamed``) -> its new name, with
    a deprecation line on stderr; a key whose value is a comma-separated list of its own
    (``Task.list_keys``, e.g. ``data.extra_test=A,B``) or of ``NAME=VALUE`` pairs (``data.hf_splits``,
    ``data.hf_columns``) quoted, so Hydra reads one string, not a sweep."""
    from attnapps.data import hub
    from attnapps.task import get_task

    try:
        task = get_task(_task_of(_user_overrides(argv)))
    except ConfigError:  # an unknown task= is reported, with the known ones, by validate()
        return list(argv)
    out = []
    for a in argv:
        key, eq, value = a.partition("=")
        if eq and key in task.aliases:
            a = f"{task.aliases[key]}={value}"
        elif eq and key in task.renamed:
            print(f"warning: {key}= is deprecated and will be removed in the next release; use "
                  f"{task.renamed[key]}=", file=sys.stderr)
            a = f"{task.renamed[key]}={value}"
        elif eq and (key in task.list_keys and "," in value or key in hub.PAIR_KEYS and ("," in value or "=" in value)) \
                and value[:1] not in ("'", '"'):
            quote = '"' if "'" in value else "'"
            a = f"{key}={quote}{value}{quote}"
        out.append(a)
    return out


def _elastic_run_dir(argv: list[str], rank: int) -> list[str]:
    """A worker group torchrun restarted (``--max-restarts``) goes on in the run directory of its first
    attempt, where the trainer finds ``last.pt`` and resumes from it; without ``hydra.run.dir=`` that
    directory is read from the note rank 0 left at the first attempt."""
    from attnapps.training import distributed as dist

    record = dist.elastic_record()
    if (rank != 0 or dist.restart_count() == 0 or record is None or not record.is_file()
            or any(a.startswith("hydra.run.dir=") for a in argv)):
        return argv
    return argv + [f"hydra.run.dir={record.read_text().strip()}"]


EXTRA_KEYS = "ATTNAPPS_EXTRA_KEYS"


def with_extra_keys(argv: list[str]) -> list[str]:
    """``$ATTNAPPS_EXTRA_KEYS`` (``key=value`` words, shell-quoted) added to a run's keys, replacing the same
    keys given on the command line: how the documentation's tests run every documented command at a tiny
    budget without a second copy of the commands. ``?key=value`` is added only when the run's task has
    that key (one list for every task: ``?decode.beam=1`` shrinks the tasks that decode)."""
    import shlex

    extra = shlex.split(os.environ.get(EXTRA_KEYS, ""))
    if not extra:
        return argv
    bad = [k for k in extra if "=" not in k or k.startswith("-")]
    if bad:
        raise AttnappsError(f"{EXTRA_KEYS}: expected key=value words, got {bad[0]!r}")
    if any(k.startswith("?") for k in extra):
        from attnapps.config import describe
        from attnapps.task import get_task

        keys = {key for key, *_ in describe(get_task(_task_of(_user_overrides(argv))).config_class)}
        extra = [k.removeprefix("?") for k in extra if not k.startswith("?") or k[1:].split("=", 1)[0] in keys]
    replaced = {k.split("=", 1)[0].lstrip("+~") for k in extra}
    return [a for a in argv if a.split("=", 1)[0].lstrip("+~") not in replaced] + extra


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        argv = with_extra_keys(argv)
    except AttnappsError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    argv = expand_aliases(argv)  # (loads the task plugins)
    from attnapps import provenance

    if "TORCHELASTIC_RUN_ID" in os.environ:
        command = ["torchrun", "-m", "attnapps.run"]
    elif sys.argv and sys.argv[0] == "attnapps run":  # the console script (attnapps.cli)
        command = ["attnapps", "run"]
    else:
        command = ["python", "-m", "attnapps.run"]
    provenance.set_command(command + argv)
    try:
        _register_primary()
        if "--help" in argv or "-h" in argv:
            print_help(argv)
            return
        if "--hydra-help" not in argv and "--info" not in argv and "-i" not in argv:
            validate(argv)
            check_run_dir(argv)
    except AttnappsError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    rank = int(os.environ.get("RANK", "0"))
    argv = _elastic_run_dir(argv, rank)
    if rank != 0 and not any(a.startswith("hydra.run.dir=") for a in argv):
        # Other ranks get rank 0's run directory by broadcast; keep Hydra from creating its own.
        argv = argv + ["hydra.run.dir=.", "hydra.output_subdir=null",
                       "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    elif rank != 0:
        argv = argv + ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    flags = [a for a in argv if a in ("-m", "--multirun")]  # argparse wants flags before overrides
    sys.argv = [sys.argv[0]] + flags + [a for a in argv if a not in flags]
    _hydra_main()()


if __name__ == "__main__":
    main()
