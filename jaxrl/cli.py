"""The `jaxrl` command line: `train`, `resume`, `eval`, `plot` and `list`.

Flags are generated from each agent's `Config` and `HParams` dataclasses, so every field
has one (`--num-envs`, `--learning-rate`, `--anneal-lr/--no-anneal-lr`, ...). We build the
parser with argparse rather than tyro so that every user error is exactly one line
(`jaxrl: error: <field> ...`) with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from typing import Any, NoReturn



class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str) -> NoReturn:
        from jaxrl.config import ConfigError
        raise ConfigError(message)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_docs(cls: Any) -> dict[str, str]:
    """Descriptions of fields from the `Attributes:` sections of a class's docstrings.

    Base classes first, so a preset's subclass documents only the fields it changes.
    """
    docs = {}
    for klass in reversed(cls.__mro__):
        current, in_section = None, False
        for line in (klass.__dict__.get("__doc__") or "").splitlines():
            stripped = line.strip()
            if stripped == "Attributes:":
                in_section = True
                continue
            if not in_section:
                continue
            if not stripped:
                break
            name, sep, text = stripped.partition(":")
            if sep and name.isidentifier() and line.startswith("      ") and \
                    not line.startswith("        "):
                current = name
                docs[name] = text.strip()
            elif current:
                docs[current] += " " + stripped
    return docs


def _add_field_flags(parser: argparse.ArgumentParser, cls: Any, title: str,
                     skip: tuple[str, ...] = ()) -> None:
    group = parser.add_argument_group(title)
    docs = _field_docs(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        default = field.default
        help_text = f"{docs.get(field.name, '')} (default: {default})".strip()
        if isinstance(default, bool):
            group.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
        elif isinstance(default, tuple):
            group.add_argument(_flag(field.name), nargs="+", type=int, default=None,
                               metavar="N", help=help_text)
        elif isinstance(default, (int, float, str)):
            group.add_argument(_flag(field.name), type=type(default), default=None,
                               metavar=type(default).__name__.upper(), help=help_text)


def _collect(args: argparse.Namespace, cls: Any) -> dict[str, Any]:
    out = {}
    for field in dataclasses.fields(cls):
        value = getattr(args, field.name, None)
        if value is not None:
            out[field.name] = tuple(value) if isinstance(field.default, tuple) else value
    return out


def _default_out(agent: str, env: str) -> str:
    base = os.path.join("runs", f"{agent}-{env.replace('/', '-')}")
    out, i = base, 1
    while os.path.exists(os.path.join(out, "metrics.jsonl")):
        out, i = f"{base}-{i}", i + 1
    return out


# Agents, envs and the runner are imported inside the commands so that usage errors and
# `--help` answer before JAX and the libraries load.
def _train(argv: list[str]) -> int:
    from jaxrl import agents
    from jaxrl.config import ConfigError

    if not argv or argv[0].startswith("-"):
        raise ConfigError(f"agent is required; allowed: {', '.join(agents.ENTRIES)}")
    agent_name = argv[0]
    if agent_name not in agents.ENTRIES:
        raise ConfigError(f"agent {agent_name!r} is unknown; allowed: "
                          f"{', '.join(agents.ENTRIES)}")
    agent = agents.get(agent_name)
    parser = _Parser(prog=f"jaxrl train {agent_name}", description=agent.doc)
    run = parser.add_argument_group("run")

    def count(flag: str, default: int | None, text: str) -> None:
        run.add_argument(flag, type=int, default=default, metavar="INT", help=text)

    count("--num-seeds", 1, "seeds trained at once with vmap (default: 1)")
    count("--seed", 0, "base seed (default: 0)")
    run.add_argument("--out", default=None, help="run folder (default: runs/AGENT-ENV)")
    count("--devices", None, "local devices to shard seeds over (default: automatic)")
    count("--seed-batch", None, "seeds computed side by side (default: all, vmapped); "
          "smaller groups run one after another: less memory, sometimes faster on CPU")
    count("--chunk-iterations", None,
          "iterations per jitted chunk between host logging (default: ~1/20)")
    count("--eval-episodes", 0, "greedy evaluation episodes per seed after training (default: 0)")
    count("--checkpoint-every", None, "save a checkpoint every INT iterations, at chunk ends, "
          "and at the end (default: every chunk)")
    count("--keep-checkpoints", 3, "how many of the newest checkpoints to keep (default: 3)")
    run.add_argument("--tensorboard", action="store_true",
                     help="also log to OUT/tensorboard (needs the tensorboard extra)")
    run.add_argument("--wandb", action="store_true",
                     help="also log to Weights & Biases (needs the wandb extra)")
    run.add_argument("--wandb-project", default=None, metavar="NAME",
                     help="Weights & Biases project (default: wandb's; implies --wandb)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an earlier run in --out")
    run.add_argument("--dry-run", action="store_true",
                     help="validate everything, print the memory estimate and exit 0 "
                          "without touching disk")
    run.add_argument("--watchdog-factor", type=float, default=None, metavar="FLOAT",
                     help="stop a chunk taking FLOAT times the slowest earlier one, writing "
                          "every thread's stack to OUT/hang-stacks.txt (0: off; default: 20)")
    run.add_argument("--watchdog-floor-s", type=float, default=None, metavar="SECONDS",
                     help="the watchdog never stops a chunk sooner than this (default: 60)")
    run.add_argument("--no-tuned", action="store_true",
                     help="start from the plain defaults, not the tuned settings for this env "
                          "(jaxrl/data/tuned)")
    _add_field_flags(parser, agent.Config, "config (static)")
    _add_field_flags(parser, agent.HParams, "hyperparameters (traced; sweepable)")
    args = parser.parse_args(argv[1:])

    from jaxrl import experiment, tuned

    flags = {**_collect(args, agent.Config), **_collect(args, agent.HParams)}
    config, hparams, entry = tuned.settings(agent, flags.pop("env", None),
                                            tuned=not args.no_tuned, **flags)

    out = args.out if args.out is not None else _default_out(agent_name, config.env)
    watchdog = {k: v for k, v in (("watchdog_factor", args.watchdog_factor),
                                  ("watchdog_floor_s", args.watchdog_floor_s)) if v is not None}
    experiment.train(agent, config, hparams, out, seed=args.seed,
                     num_seeds=args.num_seeds, devices=args.devices,
                     seed_batch=args.seed_batch, chunk_iterations=args.chunk_iterations,
                     progress=not args.no_progress,
                     overwrite=args.overwrite, eval_episodes=args.eval_episodes,
                     tensorboard=args.tensorboard, checkpoint_every=args.checkpoint_every,
                     wandb=args.wandb or args.wandb_project is not None,
                     wandb_project=args.wandb_project,
                     keep_checkpoints=args.keep_checkpoints,
                     tuned=entry.where if entry else None, dry_run=args.dry_run,
                     **watchdog)
    if not args.dry_run:
        print(f"run folder: {out}")
    return 0


def _resume(argv: list[str]) -> int:
    parser = _Parser(prog="jaxrl resume",
                     description="Continue a run from its newest checkpoint to its end.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--watchdog-factor", type=float, default=None, metavar="FLOAT",
                        help="replace the run's watchdog factor (0: off)")
    parser.add_argument("--watchdog-floor-s", type=float, default=None, metavar="SECONDS",
                        help="replace the run's watchdog floor")
    args = parser.parse_args(argv)

    from jaxrl import experiment
    from jaxrl.agents import REGISTRY

    watchdog = {k: v for k, v in (("watchdog_factor", args.watchdog_factor),
                                  ("watchdog_floor_s", args.watchdog_floor_s)) if v is not None}
    experiment.resume(args.run_dir, REGISTRY, progress=not args.no_progress,
                      watchdog=watchdog)
    print(f"run folder: {args.run_dir}")
    return 0


def _eval(argv: list[str]) -> int:
    parser = _Parser(prog="jaxrl eval",
                     description="Evaluate a checkpoint's greedy policy on fresh vmapped envs.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder")
    parser.add_argument("--episodes", type=int, default=100, metavar="INT",
                        help="episodes per seed, one per env copy (default: 100)")
    parser.add_argument("--checkpoint", type=int, default=None, metavar="ITERATION",
                        help="the checkpoint to evaluate (default: the newest)")
    parser.add_argument("--seed", type=int, default=None, metavar="INT",
                        help="evaluation seed (default: the run's)")
    args = parser.parse_args(argv)

    import numpy as np

    from jaxrl import experiment
    from jaxrl.agents import REGISTRY

    ev = experiment.evaluate_run(args.run_dir, REGISTRY, episodes=args.episodes,
                                 step=args.checkpoint, seed=args.seed)
    print(f"checkpoint {ev.checkpoint} (iteration {ev.iteration} of {ev.num_iterations}): "
          f"greedy return over {args.episodes} episodes per seed")
    print(f"{'seed':>6} {'episodes':>9} {'mean':>10} {'std':>10} {'min':>10} {'max':>10}")
    rows = [(str(s), ev.returns[s]) for s in range(ev.returns.shape[0])]
    if ev.returns.shape[0] > 1:
        rows.append(("all", ev.returns.reshape(-1)))
    for name, values in rows:
        done = values[np.isfinite(values)]
        stats = (f"{done.mean():10.2f} {done.std():10.2f} {done.min():10.2f} {done.max():10.2f}"
                 if done.size else f"{'-':>10} {'-':>10} {'-':>10} {'-':>10}")
        print(f"{name:>6} {done.size:>9} {stats}")
    if ev.returns.shape[0] > 1:
        from jaxrl import stats

        seed_means = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan
                               for r in ev.returns])
        seed_means = seed_means[np.isfinite(seed_means)]
        if seed_means.size:
            low, high = stats.interval(seed_means)
            print(f"over seeds: mean {seed_means.mean():.2f}, IQM {stats.iqm(seed_means):.2f}, "
                  f"95% bootstrap interval of the mean [{low:.2f}, {high:.2f}]")
    unfinished = int(np.sum(~np.isfinite(ev.returns)))
    if unfinished:
        print(f"{unfinished} episode(s) did not end within the time limit and are left out")
    return 0


def _plot(argv: list[str]) -> int:
    parser = _Parser(prog="jaxrl plot",
                     description="Learning curves of runs: mean and 95% band over seeds.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders")
    parser.add_argument("--out", required=True, help="image file to write (e.g. curves.png)")
    parser.add_argument("--x", choices=("env_steps", "wall_time"), default="env_steps",
                        help="x axis: env steps per seed or wall time (default: env_steps)")
    parser.add_argument("--metric", default="episode/return",
                        help="metric of metrics.jsonl to plot (default: episode/return)")
    args = parser.parse_args(argv)

    from jaxrl import plotting

    plotting.plot_runs(args.run_dirs, args.out, x=args.x, metric=args.metric)
    print(f"wrote {args.out}")
    return 0


def _list(argv: list[str]) -> int:
    from jaxrl.config import ConfigError
    if argv:
        raise ConfigError(f"list takes no arguments, got {' '.join(argv)}")
    from jaxrl import envs
    from jaxrl.agents import REGISTRY

    print("agents:")
    for name, agent in REGISTRY.items():
        print(f"  {name:<12} {agent.doc}")
    print("environments:")
    for env_id in envs.list_envs():
        print(f"  {env_id}")
    return 0


def _lifelong(argv: list[str]) -> int:
    from jaxrl import lifelong
    from jaxrl.agents import REGISTRY

    return lifelong.main(argv, REGISTRY)


def _demos(argv: list[str]) -> int:
    from jaxrl import demos
    from jaxrl.agents import REGISTRY

    return demos.command(argv, REGISTRY)


COMMANDS = {"train": _train, "resume": _resume, "eval": _eval, "plot": _plot, "list": _list,
            "lifelong": _lifelong, "demos": _demos}
USAGE = ("usage: jaxrl {train AGENT [flags] | resume RUN_DIR | eval RUN_DIR [--episodes N] | "
         "plot RUN_DIR [RUN_DIR ...] --out FILE.png | list | demos RUN_DIR --episodes N --out "
         "FILE.npz | lifelong AGENT --tasks A,B,C --out DIR}   (jaxrl COMMAND --help for flags)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `jaxrl` console script; returns the exit status."""
    real_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if real_process:
        signal.signal(signal.SIGINT, _interrupt)
    try:
        # Imported here, not at the top (it loads JAX, seconds): Ctrl-C meanwhile is one line.
        from jaxrl.config import ConfigError
        status = _dispatch(argv, ConfigError)
        if real_process:
            # The work is done: a Ctrl-C while the interpreter exits (in an atexit hook)
            # just ends the process, as SIGINT does, instead of a traceback there.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        return status
    except KeyboardInterrupt as e:
        print(f"jaxrl: {e}" if str(e) else "jaxrl: interrupted before anything was written",
              file=sys.stderr)
        if real_process:
            # Interpreter teardown while XLA's threads still run can crash: end here.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C as `KeyboardInterrupt`, except inside a garbage-collector callback (JAX
    installs one), where Python would print it as ignored and go on: there it is
    delivered again a moment later."""
    import gc
    import threading

    if frame is not None and frame.f_code in {getattr(cb, "__code__", None)
                                              for cb in gc.callbacks}:
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        return
    raise KeyboardInterrupt


def _dispatch(argv: list[str], config_error: type) -> int:
    try:
        if argv and argv[0] in ("-h", "--help"):
            print(USAGE)
            return 0
        if not argv:
            raise config_error(f"command is required; allowed: {', '.join(COMMANDS)} "
                               f"({USAGE})")
        command = argv[0]
        if command not in COMMANDS:
            raise config_error(f"command {command!r} is unknown; allowed: "
                               f"{', '.join(COMMANDS)}")
        return COMMANDS[command](argv[1:])
    except config_error as e:
        print(f"jaxrl: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `jaxrl list | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a fault of the run or the machine: one line, logs kept
        line = _fault_line(e)
        if line is None:
            raise
        print(f"jaxrl: error: {line}", file=sys.stderr)
        return 1


def _fault_line(e: Exception) -> str | None:
    """The one line for a fault that is not a user error (None: a bug, let it raise)."""
    from jaxrl.guard import FaultError, HangError
    from jaxrl.runner import NonFiniteError

    if isinstance(e, NonFiniteError):
        return (f"training stopped: {e} (metrics.jsonl and the checkpoints hold the chunks "
                "before it)")
    if isinstance(e, (FaultError, HangError)):
        return str(e)
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        return (f"{e.strerror or type(e).__name__}{where} (metrics.jsonl and the checkpoints "
                "hold what was saved before it)")
    if isinstance(e, MemoryError):
        return "out of memory (lower num_seeds, num_envs, buffer_size or hidden_sizes)"
    return None


if __name__ == "__main__":
    sys.exit(main())
