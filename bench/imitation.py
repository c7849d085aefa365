"""Imitation measurements (4 seeds each), written to bench/imitation_results.json and the
table in bench/IMITATION.md.

Parts, each skipped when its result is already in the JSON file (so the script resumes
part by part; `--redo PART` recomputes one):

* `experts`: PPO experts trained as `jaxrl train ppo --env CartPole-v1` and
  `--env Pendulum-v1` (the tuned settings) into runs/, and 16 greedy demonstration
  episodes from each (`jaxrl demos`); the expert return is those episodes' mean.
* `bc-CartPole-v1`, `bc-Pendulum-v1`: behaviour cloning from the first 1, 4 and 16
  episodes, seeds x sizes vmapped in one compile; greedy evaluation, 16 episodes a seed.
* `dagger-vs-bc`: CartPole-v1, DAgger with a label budget of 500 and 2000 expert labels
  (no demonstrations: it starts with the expert driving) against BC from 1 and 4 episodes
  (500 and 2000 labels), same gradient steps.
* `gail-*`, `airl-*`: PPO on the discriminator's reward from the 16 episodes (CartPole:
  PPO's defaults; Pendulum: PPO's tuned Pendulum settings).
* `airl-transfer`: a fresh PPO trained only on the reward g(s) of seed 0's AIRL
  discriminator (CartPole).

Run with `nice -n 10 .venv/bin/python bench/imitation.py [--parts ...]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "imitation_results.json")
REPORT = os.path.join(ROOT, "bench", "IMITATION.md")
RUNS = os.path.join(ROOT, "runs")
SEEDS = 4
EVAL_EPISODES = 16
ENVS = ("CartPole-v1", "Pendulum-v1")


def _jaxrl(*args: str) -> None:
    subprocess.run([os.path.join(ROOT, ".venv", "bin", "jaxrl"), *args], check=True)


def expert_dir(env: str) -> str:
    return os.path.join(RUNS, f"expert-ppo-{env.split('-')[0].lower()}")


def demos_path(env: str) -> str:
    return os.path.join(RUNS, "demos", f"{env.split('-')[0].lower()}16.npz")


def part_experts(results: dict) -> dict:
    from jaxrl import demos

    out = {}
    for env in ENVS:
        if not os.path.exists(os.path.join(expert_dir(env), "summary.json")):
            _jaxrl("train", "ppo", "--env", env, "--out", expert_dir(env), "--no-progress",
                   "--eval-episodes", "20")
        if not os.path.exists(demos_path(env)):
            os.makedirs(os.path.dirname(demos_path(env)), exist_ok=True)
            _jaxrl("demos", expert_dir(env), "--episodes", "16", "--out", demos_path(env))
        d = demos.load(demos_path(env))
        out[env] = {"expert_return": d.expert_return,
                    "expert_return_std": float(np.std(d.episode_return)),
                    "demo_steps": d.size, "run": os.path.relpath(expert_dir(env), ROOT)}
    return out


def evaluate(agent, config, params) -> np.ndarray:
    """Greedy return per run `[R]` (mean of EVAL_EPISODES episodes) of params `[R, ...]`."""
    from jaxrl import experiment

    returns = experiment.evaluate(agent, agent.setup(config), params,
                                  num_episodes=EVAL_EPISODES, seed=1)
    return np.nanmean(returns, axis=1)


def _stats(values) -> dict:
    values = np.asarray(values, np.float64)
    return {"per_seed": [float(v) for v in values], "mean": float(values.mean()),
            "std": float(values.std())}


def part_bc(env: str):
    from jaxrl import runner
    from jaxrl.agents import imitation as im
    from jaxrl.config import stack_hparams

    def run(results: dict) -> dict:
        config = im.CloneConfig(env=env, demos=demos_path(env), total_timesteps=8 * 64 * 40)
        sizes = (1, 4, 16)
        hparams = stack_hparams([im.CloneHParams.create(demo_episodes=float(k))
                                 for k in sizes])
        train = jax.jit(jax.vmap(jax.vmap(runner.make_train(im.BC_AGENT, config),
                                          in_axes=(0, None)), in_axes=(None, 0)))
        start = time.time()
        state, _ = train(jax.random.split(jax.random.key(0), SEEDS), hparams)
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), state.params)
        ret = evaluate(im.BC_AGENT, config, flat).reshape(len(sizes), SEEDS)
        return {"wall_s": time.time() - start, "gradient_steps": config.num_iterations
                * config.gradient_steps,
                **{f"episodes_{k}": _stats(ret[i]) for i, k in enumerate(sizes)}}

    return run


def part_dagger_vs_bc(results: dict) -> dict:
    from jaxrl import runner
    from jaxrl.agents import imitation as im

    env = "CartPole-v1"
    out = {}
    for budget, episodes in ((500, 1), (2000, 4)):
        # 100 labels an iteration; as many gradient steps as BC's 40 x 50.
        config = im.DAggerConfig(env=env, expert=expert_dir(env), num_envs=4, rollout_len=25,
                                 total_timesteps=100 * 40, label_budget=budget,
                                 capacity=budget)
        hparams = im.DAggerHParams.create(beta_init=1.0, beta_decay=0.5)
        start = time.time()
        state, metrics = jax.jit(jax.vmap(runner.make_train(im.DAGGER_AGENT, config),
                                          in_axes=(0, None)))(
            jax.random.split(jax.random.key(0), SEEDS), hparams)
        out[f"dagger_{budget}"] = {
            **_stats(evaluate(im.DAGGER_AGENT, config, state.params)),
            "labels": float(metrics["dagger/expert_labels"][0, -1]),
            "wall_s": time.time() - start}
        bc = results.get("bc-CartPole-v1", {}).get(f"episodes_{episodes}")
        if bc:
            out[f"bc_{budget}"] = {**bc, "labels": 500 * episodes}
    return out


# AIRL on CartPole (where the agent can end the episode) maximises softplus of the logit:
# with the paper's logit reward it learned to fall at once (33.5, 4 seeds; IMITATION.md).
# Results under the logit reward are kept in the JSON under `*-logit-reward*` keys.
# On Pendulum the logit reward gave -1616 (4 seeds), softplus with the default
# discriminator -1614: the -log pi inside AIRL's logit pays the policy for widening and the
# discriminator fell behind (policy accuracy 0); a faster one (AIRL_DISC) keeps up.
AIRL_REWARD = {"CartPole-v1": "softplus", "Pendulum-v1": "softplus"}
AIRL_DISC = {"Pendulum-v1": {"disc_learning_rate": 1e-3, "disc_steps": 16}}


def _adversarial_config(kind: str, env: str):
    from jaxrl.agents import imitation as im
    from jaxrl.agents import ppo

    cls = im.AIRLConfig if kind == "airl" else im.AdversarialConfig
    base, hparams = ppo.AGENT.settings(env)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    extra = {"reward": AIRL_REWARD[env], **AIRL_DISC.get(env, {})} if kind == "airl" else {}
    return cls(**fields, demos=demos_path(env), **extra), hparams


def part_adversarial(kind: str, env: str):
    from jaxrl import logger, runner
    from jaxrl.agents import imitation as im

    agent = im.AIRL_AGENT if kind == "airl" else im.GAIL_AGENT

    def run(results: dict) -> dict:
        config, hparams = _adversarial_config(kind, env)
        start = time.time()
        state, metrics = jax.jit(jax.vmap(runner.make_train(agent, config),
                                          in_axes=(0, None)))(
            jax.random.split(jax.random.key(0), SEEDS), hparams)
        metrics = jax.tree.map(np.asarray, metrics)
        if kind == "airl" and env == "CartPole-v1":
            np.save(os.path.join(RUNS, "airl-cartpole-disc.npy"),
                    jax.tree.map(lambda x: np.asarray(x[0]), state.addons["airl"].params),
                    allow_pickle=True)
        return {**_stats(evaluate(agent, config, state.params)),
                "final_training_return": _stats(logger.final_returns(metrics)),
                "total_timesteps": config.total_timesteps, "wall_s": time.time() - start}

    return run


def part_airl_transfer(results: dict) -> dict:
    from jaxrl import runner
    from jaxrl.agents import imitation as im
    from jaxrl.agents import ppo

    env = "CartPole-v1"
    config, _ = _adversarial_config("airl", env)
    from jaxrl import demos

    disc = np.load(os.path.join(RUNS, "airl-cartpole-disc.npy"), allow_pickle=True).item()
    # g is recovered up to a constant; fixed so that every expert state pays >= 0.
    baseline = float(np.min(im.airl_g(disc, demos.load(demos_path(env)).obs, config)))
    agent = ppo.AGENT.extend("ppo-airl-reward", im.learned_reward(disc, config,
                                                                  baseline=baseline))
    ppo_config, hparams = ppo.AGENT.settings(env)
    start = time.time()
    state, _ = jax.jit(jax.vmap(runner.make_train(agent, ppo_config), in_axes=(0, None)))(
        jax.random.split(jax.random.key(1), SEEDS), hparams)
    return {**_stats(evaluate(agent, ppo_config, state.params)), "baseline": baseline,
            "wall_s": time.time() - start}


def part_airl_f_pendulum(results: dict) -> dict:
    """AIRL on Pendulum maximising f(s, a, s') alone (no -log pi in the reward)."""
    from jaxrl import logger, runner
    from jaxrl.agents import imitation as im

    env = "Pendulum-v1"
    config, hparams = _adversarial_config("airl", env)
    config = dataclasses.replace(config, reward="f")
    start = time.time()
    state, metrics = jax.jit(jax.vmap(runner.make_train(im.AIRL_AGENT, config),
                                      in_axes=(0, None)))(
        jax.random.split(jax.random.key(0), SEEDS), hparams)
    return {**_stats(evaluate(im.AIRL_AGENT, config, state.params)),
            "final_training_return": _stats(logger.final_returns(jax.tree.map(np.asarray,
                                                                              metrics))),
            "total_timesteps": config.total_timesteps, "wall_s": time.time() - start}


PARTS = {"experts": part_experts,
         **{f"bc-{env}": part_bc(env) for env in ENVS},
         "dagger-vs-bc": part_dagger_vs_bc,
         **{f"{kind}-{env}": part_adversarial(kind, env)
            for kind in ("gail", "airl") for env in ENVS},
         "airl-transfer": part_airl_transfer,
         "airl-Pendulum-v1-f-reward": part_airl_f_pendulum}


def write_report(results: dict) -> None:
    lines = ["# Imitation learning (bench/imitation.py)", "",
             f"Greedy evaluation returns, {EVAL_EPISODES} episodes per seed, mean +- std over "
             f"{SEEDS} seeds (per-seed values in `bench/imitation_results.json`). The "
             "experts are PPO runs (`jaxrl train ppo --env ENV`, tuned settings); the "
             "expert return is the mean of the 16 recorded greedy demonstration episodes. "
             "No imitation learner sees the env's reward.", ""]
    experts = results.get("experts", {})

    def cell(r):
        return "not run" if r is None else f"{r['mean']:.1f} +- {r['std']:.1f}"

    def pct(r, env):
        e = experts.get(env, {}).get("expert_return")
        if r is None or e is None:
            return ""
        return f"{100 * r['mean'] / e:.0f}%" if env == "CartPole-v1" else ""

    lines += ["| method | env | data | return | vs expert |", "|---|---|---|---|---|"]
    for env in ENVS:
        e = experts.get(env)
        if e:
            lines.append(f"| expert (PPO) | {env} | - | {e['expert_return']:.1f} +- "
                         f"{e['expert_return_std']:.1f} | 100% |")
        bc = results.get(f"bc-{env}", {})
        for k in (1, 4, 16):
            r = bc.get(f"episodes_{k}")
            lines.append(f"| BC | {env} | {k} episodes | {cell(r)} | {pct(r, env)} |")
        for kind in ("gail", "airl"):
            r = results.get(f"{kind}-{env}")
            steps = f"16 episodes, {r['total_timesteps']:,} env steps" if r else "16 episodes"
            lines.append(f"| {kind.upper()} | {env} | {steps} | {cell(r)} | {pct(r, env)} |")
    dv = results.get("dagger-vs-bc", {})
    for budget in (500, 2000):
        for name in ("bc", "dagger"):
            r = dv.get(f"{name}_{budget}")
            lines.append(f"| {name.upper() if name == 'bc' else 'DAgger'} | CartPole-v1 | "
                         f"{budget} expert labels | {cell(r)} | {pct(r, 'CartPole-v1')} |")
    r = results.get("airl-transfer")
    lines.append(f"| PPO on AIRL's g(s) - min over expert states (seed 0's) | CartPole-v1 | "
                 f"learned reward only | {cell(r)} | {pct(r, 'CartPole-v1')} |")
    lines += ["", "AIRL rows above use `reward = softplus` (PPO maximises `-log(1 - D)` of "
              "AIRL's discriminator; on Pendulum with `disc_learning_rate` 1e-3 and "
              "`disc_steps` 16). Other reward forms: the paper's `log D - log(1 - D)` "
              "(`logit`), and `f` (the logit plus `log pi`):", "",
              "| method | env | return | vs expert |", "|---|---|---|---|"]
    for key, label, env in (
            ("airl-CartPole-v1-logit-reward", "AIRL, logit reward", "CartPole-v1"),
            ("airl-Pendulum-v1-logit-reward", "AIRL, logit reward", "Pendulum-v1"),
            ("airl-transfer-logit-reward-no-baseline",
             "PPO on g(s) of the logit-reward AIRL, no baseline", "CartPole-v1"),
            ("airl-Pendulum-v1-f-reward", "AIRL, reward f (no -log pi), fast discriminator",
             "Pendulum-v1"),
            ("airl-Pendulum-v1-softplus-reward-default-disc",
             "AIRL, softplus reward, default discriminator (lr 3e-4, 4 steps)", "Pendulum-v1")):
        r = results.get(key)
        lines.append(f"| {label} | {env} | {cell(r)} | {pct(r, env)} |")
    lines += ["", "Notes:", "",
              "- DAgger vs BC is measured on CartPole-v1, not on a task built for compounding "
              "error. A 15x15 carved maze with 25% action slip was tried (shortest-path oracle "
              "as the expert) and dropped: with the maze image as observation BC from one "
              "episode (93 labels) already reached the goal in every evaluation episode (4 "
              "seeds), and with normalised coordinates as observation neither learner fitted "
              "the labels (BC 0.47-0.70 success, DAgger 0-0.25 at 420 and 1600 labels).",
              "- The AIRL transfer row trains a fresh PPO on seed 0's g(s) minus its minimum "
              "over the expert's states; AIRL identifies g only up to a constant, and CartPole "
              "lets the agent end the episode, so the constant decides whether surviving pays.",
              "- Third-person imitation is not measured (only its gradient-reversal layer "
              "exists, tested).",
              "", "Wall times (s, 2 shared CPU cores): " + ", ".join(
        f"{k} {v['wall_s']:.0f}" for k, v in results.items() if isinstance(v, dict)
        and "wall_s" in v), ""]
    with open(REPORT, "w") as f:
        f.write("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--redo", nargs="*", default=[], choices=list(PARTS))
    args = parser.parse_args(argv)
    results = json.load(open(RESULTS)) if os.path.exists(RESULTS) else {}
    for name in args.parts:
        if name in results and name not in args.redo:
            continue
        print(f"[imitation bench] {name} ...", flush=True)
        results[name] = PARTS[name](results)
        print(json.dumps({name: results[name]})[:400], flush=True)
        with open(RESULTS, "w") as f:
            json.dump(results, f, indent=1)
        write_report(results)
    write_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
