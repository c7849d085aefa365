"""PPO on CartPole-v1: speed of jaxrl against a peer library and the raw env ceiling.

Every number is measured in ONE invocation on the same machine, and the script prints
ratios between them, so results from different machines are never mixed.

What is measured (each in its own subprocess, so compilation caches, thread pools and
GPU memory of one measurement cannot affect another):

  PEER     rejax 0.1.3 PPO (PyPI), in its own venv `bench/.peer-venv` (created here on
           first use: `pip install rejax==0.1.3 gymnax==0.0.9 jax==0.10.2`), run by
           `bench/_rejax_peer.py`.  Configured like PureJaxRL's CartPole PPO: 4 envs x
           128 steps, 5e5 steps, 4 epochs x 4 minibatches, 64x64 tanh actor and critic,
           lr 2.5e-4, gamma 0.99, lambda 0.95, clip 0.2, ent 0.01, vf 0.5, grad clip 0.5,
           one evaluation at the end only.  rejax 0.1.3 cannot anneal the learning rate
           (constant lr); see `_rejax_peer.py` for the details.  Also measured: the
           same run without the final evaluation, and 8 vmapped seeds.
  CEILING  raw gymnax 1.0.1 CartPole-v1 steps/s: uniformly random actions, `env.step`
           vmapped over N envs inside a jitted `lax.scan` (no learning at all), at 4 envs
           and at `--num-envs-large` envs (and at num-envs-large x num-seeds-large).
  OURS     `jaxrl.agents.ppo`: `jax.jit(jax.vmap(runner.make_train(ppo.AGENT, config), (0, None)))`
           over seeds, at the PureJaxRL config with 1 seed and with 8 seeds, and at
           `--num-envs-large` envs x 16 steps x 30 updates (x `--num-seeds-large` seeds).

For every training run: compile time = wall time of `jit(f).lower(...)` + `.compile()`
(ahead-of-time, first compile in a fresh process), and steady env steps/s = env steps
of one call (all seeds together) / wall time of an already-compiled call, ended by
`jax.block_until_ready`.  Each timed call is repeated `--repeats` times; steps/s uses the
median (the best is reported too).

Ratios printed at the end (targets in brackets):
  ours / peer steady steps/s at the PureJaxRL config      [>= 1.5]
  ours compile / peer compile                              [<= 1.0]
  time(8 seeds) / time(1 seed), ours (and peer)            [<  8]
  ours @ num-envs-large / raw env ceiling at the same env count

Run (CPU, from the repository root):

    .venv/bin/python bench/ppo_cartpole.py
    .venv/bin/python bench/ppo_cartpole.py --json-out runs/bench_cpu.json

On a GPU machine (no PyPI there, so no peer):

    .venv/bin/python bench/ppo_cartpole.py --skip-peer --num-envs-large 2048 \\
        --num-seeds-large 16 --json-out $OUT/bench_gpu.json

The script re-invokes itself with `--worker {ceiling,jaxrl}` for the subprocesses;
those modes print one JSON line and are not meant to be used by hand.  The helpers it
shares with the other benches live in `bench/_common.py` (venvs, subprocesses, report)
and `bench/_peer_common.py` (timing of compiled calls, JSON output of workers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from _common import (  # noqa: E402 - driver-side helpers shared by the benches
    begin_results,
    get,
    one_seed,
    print_report,
    ratio,
    run_json,
    run_rejax,
    table_row,
    worker_cmd,
    write_json,
)
from _peer_common import emit_with_devices, measure, measure_train  # noqa: E402 - worker side

PEER_SCRIPT = BENCH_DIR / "_rejax_peer.py"

# PureJaxRL CartPole PPO config.
PUREJAXRL_NUM_ENVS = 4
PUREJAXRL_ROLLOUT_LEN = 128
PUREJAXRL_TOTAL_TIMESTEPS = 500_000
NUM_SEEDS_MULTI = 8


# --------------------------------------------------------------------------------------
# CEILING: raw gymnax CartPole-v1 with a uniformly random policy.
# --------------------------------------------------------------------------------------


def measure_ceiling(num_envs: int, num_steps: int, repeats: int) -> dict:
    """Env steps/s of vmapped gymnax CartPole-v1 `step` in a jitted scan, random actions."""
    import gymnax
    import jax
    import jax.numpy as jnp

    env, env_params = gymnax.make("CartPole-v1")
    num_actions = env.action_space(env_params).n

    def rollout(key):
        key, reset_key = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(reset_key, num_envs), env_params
        )

        def step(carry, _):
            key, state, ret = carry
            key, act_key, step_key = jax.random.split(key, 3)
            actions = jax.random.randint(act_key, (num_envs,), 0, num_actions)
            obs, state, reward, terminated, truncated, info = jax.vmap(
                env.step, in_axes=(0, 0, 0, None)
            )(jax.random.split(step_key, num_envs), state, actions, env_params)
            # Consume obs and reward so nothing is dead code.
            ret = ret + reward + obs.sum(-1) * 0.0
            return (key, state, ret), None

        carry = (key, state, jnp.zeros(num_envs))
        (key, state, ret), _ = jax.lax.scan(step, carry, None, num_steps)
        return state, ret

    res, _ = measure(rollout, (jax.random.key(0),), num_envs * num_steps, repeats)
    res.update(num_envs=num_envs, num_steps=num_steps)
    return res


# --------------------------------------------------------------------------------------
# OURS: jaxrl PPO.
# --------------------------------------------------------------------------------------


def measure_jaxrl(
    num_envs: int,
    num_seeds: int,
    total_timesteps: int,
    rollout_len: int = PUREJAXRL_ROLLOUT_LEN,
    repeats: int = 3,
) -> dict:
    """Compile time and steady env steps/s of jaxrl PPO, `num_seeds` seeds vmapped."""
    from jaxrl.agents import ppo

    config = ppo.Config(
        env="CartPole-v1",
        num_envs=num_envs,
        rollout_len=rollout_len,
        total_timesteps=total_timesteps,
        num_epochs=4,
        num_minibatches=4,
        hidden_sizes=(64, 64),
        activation="tanh",
        anneal_lr=True,
    )
    hparams = ppo.HParams.create(learning_rate=2.5e-4)  # the rest: PureJaxRL defaults
    # Env steps actually run: whole updates of num_envs x rollout_len per seed.
    batch = num_envs * rollout_len
    res, _ = measure_train(ppo.AGENT, config, hparams, num_seeds, repeats,
                           steps_per_seed=(total_timesteps // batch) * batch)
    res["num_updates"] = total_timesteps // batch
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-envs-large", type=int, default=2048)
    p.add_argument("--num-seeds-large", type=int, default=1)
    p.add_argument("--rollout-len-large", type=int, default=16)
    p.add_argument("--updates-large", type=int, default=30,
                   help="updates per seed of the large run: total = envs x len x this")
    p.add_argument("--total-timesteps", type=int, default=PUREJAXRL_TOTAL_TIMESTEPS,
                   help="per seed, for the PureJaxRL-config runs (ours and peer)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--peer-seeds", type=int, default=NUM_SEEDS_MULTI,
                   help="vmapped seeds for the peer's multi-seed run (1 = skip it)")
    p.add_argument("--ceiling-steps", type=int, default=2_000_000,
                   help="env steps per timed call of the raw-env ceiling (large env counts)")
    p.add_argument("--timeout", type=float, default=600, help="per subprocess, seconds")
    p.add_argument("--json-out", type=str, default=None)
    # Internal: subprocess workers.
    p.add_argument("--worker", choices=["ceiling", "jaxrl"], help=argparse.SUPPRESS)
    p.add_argument("--num-envs", type=int, help=argparse.SUPPRESS)
    p.add_argument("--num-seeds", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--num-steps", type=int, help=argparse.SUPPRESS)
    p.add_argument("--rollout-len", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker == "ceiling":
        emit_with_devices(measure_ceiling(args.num_envs, args.num_steps, args.repeats))
        return
    if args.worker == "jaxrl":
        emit_with_devices(measure_jaxrl(args.num_envs, args.num_seeds,
                                        args.total_timesteps, args.rollout_len,
                                        args.repeats))
        return

    machine, results = begin_results(args, provenance=False)
    R = args.repeats
    T = args.total_timesteps
    n_large, s_large, len_large = args.num_envs_large, args.num_seeds_large, args.rollout_len_large
    total_large = n_large * len_large * args.updates_large

    # ---- PEER ----
    if not args.skip_peer:
        extra = ["--total-timesteps", str(T), "--repeats", str(R),
                 "--num-seeds", str(args.peer_seeds), "--no-eval-variant"]
        results["peer"] = run_rejax(PEER_SCRIPT, extra, args.timeout,
                                    "peer: rejax 0.1.3 PPO (PureJaxRL config)")

    # ---- CEILING ----
    ceil_envs = [PUREJAXRL_NUM_ENVS, n_large]
    if s_large > 1:
        ceil_envs.append(n_large * s_large)
    results["ceiling"] = {}
    for n in ceil_envs:
        steps = max(1, (args.ceiling_steps if n >= 256 else 200_000) // n)
        results["ceiling"][str(n)] = run_json(
            worker_cmd(__file__, "ceiling", num_envs=n, num_steps=steps, repeats=R),
            f"ceiling: raw gymnax CartPole-v1, {n} envs x {steps} steps, random policy",
            args.timeout)

    # ---- OURS ----
    ours = results["ours"] = {}
    ours["purejaxrl_1seed"] = run_json(
        worker_cmd(__file__, "jaxrl", num_envs=PUREJAXRL_NUM_ENVS, num_seeds=1,
                   total_timesteps=T, rollout_len=PUREJAXRL_ROLLOUT_LEN, repeats=R),
        "ours: jaxrl PPO, PureJaxRL config, 1 seed", args.timeout)
    ours["purejaxrl_8seeds"] = run_json(
        worker_cmd(__file__, "jaxrl", num_envs=PUREJAXRL_NUM_ENVS,
                   num_seeds=NUM_SEEDS_MULTI, total_timesteps=T,
                   rollout_len=PUREJAXRL_ROLLOUT_LEN, repeats=R),
        f"ours: jaxrl PPO, PureJaxRL config, {NUM_SEEDS_MULTI} seeds vmapped", args.timeout)
    ours["large"] = run_json(
        worker_cmd(__file__, "jaxrl", num_envs=n_large, num_seeds=s_large,
                   total_timesteps=total_large, rollout_len=len_large, repeats=R),
        f"ours: jaxrl PPO, {n_large} envs x {len_large} steps x {args.updates_large} "
        f"updates, {s_large} seed(s)", args.timeout)

    # ---- Table ----
    peer = results.get("peer")
    devices = next((r["devices"] for r in [*results["ceiling"].values(), *ours.values()]
                    if isinstance(r, dict) and "devices" in r), None)
    results["devices"] = devices
    rows = []

    def row(name, r):
        table_row(name, r, rows, details=False)

    if peer is not None:
        row("peer rejax, 4 env, 1 seed (eval at end)", one_seed(peer))
        row("peer rejax, 4 env, 1 seed (no eval)", get(peer, "one_seed_no_eval"))
        row(f"peer rejax, 4 env, {args.peer_seeds} seeds (eval at end)", get(peer, "multi_seed"))
    for n, r in results["ceiling"].items():
        row(f"ceiling raw env, {n} envs", r)
    row("ours, 4 env, 1 seed", ours["purejaxrl_1seed"])
    row(f"ours, 4 env, {NUM_SEEDS_MULTI} seeds", ours["purejaxrl_8seeds"])
    row(f"ours, {n_large} env, {s_large} seed(s)", ours["large"])

    ours1 = ours["purejaxrl_1seed"]
    ours8 = ours["purejaxrl_8seeds"]
    peer1, peer1ne, peerN = (get(peer, "one_seed"), get(peer, "one_seed_no_eval"),
                             get(peer, "multi_seed"))
    ceil_large = results["ceiling"].get(str(n_large * s_large))
    ratios = {
        "ours/peer steady steps/s (target >= 1.5)":
            ratio(get(ours1, "steps_per_s_median"), get(peer1, "steps_per_s_median")),
        "ours/peer-without-final-eval steady steps/s (stricter)":
            ratio(get(ours1, "steps_per_s_median"), get(peer1ne, "steps_per_s_median")),
        "ours compile / peer compile (target <= 1.0)":
            ratio(get(ours1, "lower_compile_s"), get(peer1, "lower_compile_s")),
        f"ours time {NUM_SEEDS_MULTI} seeds / 1 seed (target < {NUM_SEEDS_MULTI})":
            ratio(get(ours8, "run_median_s"), get(ours1, "run_median_s")),
        f"peer time {args.peer_seeds} seeds / 1 seed (for reference)":
            ratio(get(peerN, "run_median_s"), get(peer1, "run_median_s")),
        f"ours@{n_large}x{s_large} / raw ceiling@{n_large * s_large} envs":
            ratio(get(ours["large"], "steps_per_s_median"),
                  get(ceil_large, "steps_per_s_median")),
    }
    results["ratios"] = ratios

    header = [f"jax devices: {devices}"]
    if peer is not None and "error" not in peer:
        header.append(f"peer: rejax {peer.get('rejax_version')}, jax {peer.get('jax_version')}, "
                      f"{peer.get('num_updates')} updates; lr annealing: "
                      f"{peer.get('anneal_lr')} ({peer.get('anneal_lr_note')}); grad clip: "
                      f"{peer.get('grad_clip')}")
    footer = ("compile s = jit(f).lower() + .compile(); run s = median of "
              f"{R} compiled calls; steps/s = env steps (all seeds) / run s")
    print_report(machine, results, rows, ratios, header, footer, width=100,
                 widths=(44, 10, 9, 13, 0), ratio_width=72, load_mean=False)
    write_json(results, args.json_out)


if __name__ == "__main__":
    main()
