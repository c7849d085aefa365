"""The zoo: every listed (agent, environment) pair trained with the settings `jaxrl train
AGENT --env ENV` uses, over N seeds, and one table against published returns.

    .venv/bin/python bench/zoo.py                      # every pair, 4 seeds, runs/zoo/
    .venv/bin/python bench/zoo.py --pairs ppo:CartPole-v1 dqn:Acrobot-v1
    .venv/bin/python bench/zoo.py --table-only         # rebuild bench/ZOO.md from run folders

Each pair is a run folder `runs/zoo/<agent>/<env>` written by `jaxrl.experiment.train`, so
the zoo is resumable pair by pair: a folder with a `summary.json` is done, one without is
resumed from its newest checkpoint (or started over if it has none). The table is built
from `config.json` and `summary.json` alone: final return (mean over seeds, 95%
stratified-bootstrap interval, IQM; the CLI's final return: training episodes of the last
5% of iterations), the budget, wall time on this machine and the published reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxrl import experiment, tuned  # noqa: E402
from jaxrl.agents import REGISTRY  # noqa: E402

CLASSIC_DISCRETE = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"]
BSUITE_MISC = ["Catch-bsuite", "DeepSea-bsuite", "UmbrellaChain-bsuite", "MemoryChain-bsuite",
               "DiscountingChain-bsuite", "SimpleBandit-bsuite", "FourRooms-misc",
               "MetaMaze-misc", "BernoulliBandit-misc", "GaussianBandit-misc"]
CONTINUOUS = ["Pendulum-v1", "MountainCarContinuous-v0", "PointRobot-misc"]
MINATAR = ["Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar"]

# The coverage list: the discrete workhorses on every discrete classic/bsuite/misc env, the
# continuous ones on every continuous env, the rest on the classic ones, MinAtar for PPO/DQN.
PAIRS = ([(a, e) for a in ("ppo", "a2c", "dqn", "c51") for e in CLASSIC_DISCRETE + BSUITE_MISC]
         + [(a, e) for a in ("ppo", "sac", "td3", "ddpg") for e in CONTINUOUS]
         + [(a, e) for a in ("reinforce", "ppo-kl", "trpo", "rainbow")
            for e in CLASSIC_DISCRETE]
         + [(a, e) for a in ("cq-sample", "cq-grad", "naf") for e in CONTINUOUS[:2]]
         + [(a, e) for a in ("ppo", "dqn") for e in MINATAR])

# Published returns: gymnax's README lists the return of the gymnax-blines PPO/ES
# checkpoints per environment (github.com/RobertTLange/gymnax, "Ckpt (Return)").
GYMNAX = "gymnax README (gymnax-blines checkpoints)"
REFERENCES = {
    "CartPole-v1": (500.0, GYMNAX), "Acrobot-v1": (-80.0, GYMNAX),
    "MountainCar-v0": (-118.0, GYMNAX), "Pendulum-v1": (-130.0, GYMNAX),
    "MountainCarContinuous-v0": (92.0, GYMNAX), "Catch-bsuite": (1.0, GYMNAX),
    "FourRooms-misc": (1.0, GYMNAX), "MetaMaze-misc": (32.0, GYMNAX + ", ES"),
    "PointRobot-misc": (10.0, GYMNAX + ", ES"), "BernoulliBandit-misc": (90.0, GYMNAX + ", ES"),
    "GaussianBandit-misc": (0.0, GYMNAX + ", ES"),
}


def run_dir(root: str, agent: str, env: str) -> str:
    return os.path.join(root, agent, env.replace("/", "-"))


def train_pair(agent_name: str, env: str, root: str, seeds: int) -> str:
    """Train (or resume, or skip if finished) one pair; return its run folder."""
    out = run_dir(root, agent_name, env)
    if os.path.isfile(os.path.join(out, "summary.json")):
        return out
    if os.path.isdir(os.path.join(out, "checkpoints")):
        try:
            experiment.resume(out, REGISTRY, progress=False)
            return out
        except Exception as e:  # noqa: BLE001 - no usable checkpoint: start over
            print(f"  cannot resume {out} ({e}); starting over")
    agent = REGISTRY[agent_name]
    config, hparams, entry = tuned.settings(agent, env)
    experiment.train(agent, config, hparams, out, num_seeds=seeds, progress=False,
                     overwrite=True, tuned=entry.where if entry else None)
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def table(pairs: list[tuple[str, str]], root: str) -> str:
    """The markdown table of the pairs (a row saying "not run" where no summary exists)."""
    lines = ["| agent | env | settings | steps/seed | seeds | final return [95% CI] | IQM "
             "| reference (source) | vs reference | wall |",
             "| --- | --- | --- | ---: | ---: | --- | ---: | --- | --- | ---: |"]
    for agent, env in pairs:
        out = run_dir(root, agent, env)
        try:
            with open(os.path.join(out, "summary.json")) as f:
                summary = json.load(f)
            with open(os.path.join(out, "config.json")) as f:
                config = json.load(f)
        except OSError:
            lines.append(f"| {agent} | {env} | | | | not run | | | | |")
            continue
        mean, ci = summary["final_return_mean"], summary.get("final_return_ci95") or [None] * 2
        ref, source = REFERENCES.get(env, (None, "none published"))
        verdict = ("-" if ref is None or mean is None
                   else "met" if mean >= ref else f"gap {mean - ref:+.1f}")
        lines.append(
            f"| {agent} | {env} | {config.get('tuned') or 'defaults'} "
            f"| {summary['total_timesteps']:.0e} | {summary['num_seeds']} "
            f"| {_fmt(mean)} [{_fmt(ci[0])}, {_fmt(ci[1])}] "
            f"| {_fmt(summary.get('final_return_iqm'))} "
            f"| {_fmt(ref)} ({source}) | {verdict} | {summary['wall_time_s']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", nargs="*", metavar="AGENT:ENV",
                        help="pairs to run (default: the whole coverage list)")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--root", default="runs/zoo", help="where the run folders go")
    parser.add_argument("--table", default="bench/ZOO.md", help="the markdown file to write")
    parser.add_argument("--table-only", action="store_true",
                        help="only rebuild the table from existing run folders")
    args = parser.parse_args()
    pairs = [tuple(p.split(":", 1)) for p in args.pairs] if args.pairs else PAIRS
    for agent, env in pairs:
        if agent not in REGISTRY:
            parser.error(f"agent {agent!r} is unknown; allowed: {', '.join(REGISTRY)}")
    if not args.table_only:
        for i, (agent, env) in enumerate(pairs):
            start = time.time()
            print(f"[{i + 1}/{len(pairs)}] {agent} on {env}", flush=True)
            try:
                train_pair(agent, env, args.root, args.seeds)
            except Exception as e:  # noqa: BLE001 - one failing pair must not stop the zoo
                print(f"  failed: {type(e).__name__}: {e}", flush=True)
                continue
            print(f"  done in {time.time() - start:.0f} s", flush=True)
    header = (f"# The zoo\n\nGenerated by `bench/zoo.py` on {platform.processor() or 'CPU'} "
              f"({os.cpu_count()} cores), {time.strftime('%Y-%m-%d')}. Final return: the "
              "training episodes of the last 5% of iterations, mean over seeds with a 95% "
              "stratified-bootstrap interval, and the IQM. Settings: the tuned entry the "
              "CLI uses, or the plain defaults.\n\n")
    with open(args.table, "w") as f:
        f.write(header + table(pairs, args.root) + "\n")
    print(f"wrote {args.table}")


if __name__ == "__main__":
    main()
