"""Continuous-action agents (cq-sample, cq-grad, naf, ddpg, td3, sac): configs, compile-once,
warm-up, delayed updates, temperature, noise, vmap over seeds equals separate runs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import cli, runner, testing
from jaxrl.agents import REGISTRY, continuous_q, ddpg
from jaxrl.config import ConfigError

NAMES = ["cq-sample", "cq-grad", "naf", "ddpg", "td3", "sac"]
TINY = dict(num_envs=2, rollout_len=10, total_timesteps=2 * 10 * 4, buffer_size=64,
            minibatch_size=8, learning_starts=40, train_frequency=5, hidden_sizes=(16,))


def tiny(name, **kwargs):
    return REGISTRY[name].Config(**{**TINY, "num_samples": 8, "cem_elites": 2, **kwargs}
                                 if name.startswith("cq") or name == "naf"
                                 else {**TINY, **kwargs})


MODULES = {"cq-sample": continuous_q, "cq-grad": continuous_q, "naf": continuous_q,
           "ddpg": ddpg, "td3": ddpg, "sac": ddpg}


def fresh_state(agent, setup, hparams, seed=0):
    return jax.jit(lambda key, hp: agent.init(key, setup, hp))(jax.random.key(seed), hparams)


def filled_state(agent, setup, hparams, steps=20, seed=0):
    """A state after `steps` collect steps of every env copy (past the warm-up)."""
    state = fresh_state(agent, setup, hparams, seed)
    step = jax.jit(MODULES[agent.name].collect_step, static_argnames="setup")
    for k in jax.random.split(jax.random.key(seed + 1), steps):
        state, _ = step(state, k, hparams, setup)
    return state


def sample(setup, state, key):
    return setup.buffer.sample(state.buffer, key)


jit_update = jax.jit(ddpg.update, static_argnames="setup")


class TestConfig:

    @pytest.mark.parametrize("name", NAMES)
    def test_discrete_env_is_refused_with_a_suggestion(self, name):
        # Validating a config builds no env; `setup`, which builds it, refuses it.
        config = REGISTRY[name].Config(env="CartPole-v1")
        with pytest.raises(ConfigError, match="discrete action space") as e:
            REGISTRY[name].setup(config)
        assert "CartPole-v1" in str(e.value) and "dqn" in str(e.value)

    @pytest.mark.parametrize("kwargs, field", [
        (dict(method="random"), "method"),
        (dict(num_samples=0), "num_samples"),
        (dict(cem_iters=-1), "cem_iters"),
        (dict(cem_elites=9), "cem_elites"),
        (dict(ascent_steps=0), "ascent_steps"),
        (dict(exploration_noise="pink"), "exploration_noise"),
        (dict(normalize_obs=1), "normalize_obs"),
        (dict(n_step=0), "n_step"),
        (dict(buffer_size=65), "buffer_size"),
        (dict(env="Pendulum-v0"), "Pendulum-v1"),
    ])
    def test_bad_cq_config_names_the_field(self, kwargs, field):
        with pytest.raises(ConfigError, match=field):
            tiny("cq-sample", **kwargs)

    @pytest.mark.parametrize("kwargs, field", [
        (dict(policy="beta"), "policy"),
        (dict(num_critics=0), "num_critics"),
        (dict(policy_delay=0), "policy_delay"),
        (dict(target_smoothing="yes"), "target_smoothing"),
        (dict(policy="gaussian", target_smoothing=True), "target_smoothing"),
        (dict(autotune_alpha=None), "autotune_alpha"),
        (dict(hidden_sizes=()), "hidden_sizes"),
        (dict(minibatch_size=200), "minibatch_size"),
    ])
    def test_bad_actor_critic_config_names_the_field(self, kwargs, field):
        with pytest.raises(ConfigError, match=field):
            tiny("ddpg", **kwargs)

    @pytest.mark.parametrize("name, kwargs, field", [
        ("sac", dict(alpha=0.0), "alpha"),
        ("td3", dict(target_noise=-0.1), "target_noise"),
        ("ddpg", dict(tau=0.0), "tau"),
        ("ddpg", dict(ou_theta=1.5), "ou_theta"),
        ("cq-grad", dict(ascent_step_size=0.0), "ascent_step_size"),
    ])
    def test_bad_hparams_name_the_field(self, name, kwargs, field):
        with pytest.raises(ConfigError, match=field):
            REGISTRY[name].HParams.create(**kwargs)

    def test_presets_change_defaults_only(self):
        d, t, s = ddpg.Config(), ddpg.TD3Config(), ddpg.SACConfig()
        assert (d.policy, d.num_critics, d.policy_delay, d.target_smoothing) == (
            "deterministic", 1, 1, False)
        assert (t.policy, t.num_critics, t.policy_delay, t.target_smoothing) == (
            "deterministic", 2, 2, True)
        assert (s.policy, s.num_critics, s.exploration_noise, s.autotune_alpha) == (
            "gaussian", 2, "none", True)
        assert [REGISTRY[n].Config().method for n in ("cq-sample", "cq-grad", "naf")] == [
            "sample", "grad", "naf"]

    @pytest.mark.parametrize("name", NAMES)
    def test_registry_and_cli_help_cover_every_field(self, name):
        agent = REGISTRY[name]
        for cls in (agent.Config, agent.HParams):
            docs = cli._field_docs(cls)
            assert set(docs) == {f.name for f in cli.dataclasses.fields(cls)}, cls
        assert agent.doc and agent.doc != agent.name

    def test_cli_flag_for_cem_iters(self):
        parser = cli._Parser()
        cli._add_field_flags(parser, continuous_q.Config, "config")
        args = parser.parse_args(["--cem-iters", "3", "--exploration-noise", "ou"])
        config = continuous_q.Config(**cli._collect(args, continuous_q.Config))
        assert (config.cem_iters, config.exploration_noise) == (3, "ou")


class TestActorCritic:

    @pytest.mark.parametrize("name", ["ddpg", "td3", "sac"])
    def test_update_compiles_once_with_finite_metrics(self, name):
        agent = REGISTRY[name]
        setup = agent.setup(tiny(name))
        hparams = agent.HParams.create()
        state = filled_state(agent, setup, hparams)
        keys = jax.random.split(jax.random.key(3), 3)
        samples = [sample(setup, state, k) for k in keys]
        chex.clear_trace_counter()
        update_once = jax.jit(chex.assert_max_traces(ddpg.update, n=1), static_argnames="setup")
        for batch, key in zip(samples, keys):
            state, metrics = update_once(state, batch, key, hparams, setup)
        assert int(state.step) == 3
        testing.assert_tree_finite((state.params, state.target_params, metrics))
        assert {"loss/critic", "loss/actor", "q/taken", "alpha", "policy/entropy",
                "opt/grad_norm", "opt/nonfinite_skipped"} == set(metrics)

    def test_td3_moves_actor_and_targets_every_second_update(self):
        agent = REGISTRY["td3"]
        setup = agent.setup(tiny("td3"))
        hparams = agent.HParams.create()
        state = filled_state(agent, setup, hparams)
        actors, critics, targets = [state.params["actor"]], [state.params["critic"]], [
            state.target_params]
        for k in jax.random.split(jax.random.key(4), 4):
            state, _ = jit_update(state, sample(setup, state, k), k, hparams, setup)
            actors.append(state.params["actor"])
            critics.append(state.params["critic"])
            targets.append(state.target_params)
        changed = lambda a, b: not all(  # noqa: E731
            np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        # Updates 0 and 2 (step % 2 == 0) move the actor and the targets; 1 and 3 do not.
        assert [changed(actors[i], actors[i + 1]) for i in range(4)] == [True, False, True, False]
        assert [changed(targets[i], targets[i + 1]) for i in range(4)] == [
            True, False, True, False]
        assert all(changed(critics[i], critics[i + 1]) for i in range(4))

    def test_target_is_a_polyak_average(self):
        agent = REGISTRY["ddpg"]
        setup = agent.setup(tiny("ddpg"))
        hparams = agent.HParams.create(tau=0.1)
        state = filled_state(agent, setup, hparams)
        before = state.target_params
        state, _ = jit_update(state, sample(setup, state, jax.random.key(5)),
                              jax.random.key(6), hparams, setup)
        expected = jax.tree.map(lambda p, t: 0.1 * p + 0.9 * t, state.params, before)
        chex.assert_trees_all_close(state.target_params, expected, rtol=1e-5, atol=1e-7)

    def test_sac_temperature_rises_when_entropy_is_below_target(self):
        # A target entropy far above what the policy has (scale -10: target +10 nats for
        # one action dimension) makes the temperature grow; a very low one shrinks it.
        agent = REGISTRY["sac"]
        setup = agent.setup(tiny("sac"))
        alphas = []
        for scale in (-10.0, 10.0):
            hparams = agent.HParams.create(target_entropy_scale=scale, alpha=0.5)
            state = filled_state(agent, setup, hparams)
            for k in jax.random.split(jax.random.key(7), 3):
                state, metrics = jit_update(state, sample(setup, state, k), k, hparams, setup)
            alphas.append(float(metrics["alpha"]))
        assert alphas[0] > 0.5 > alphas[1]

    def test_fixed_temperature_without_autotune(self):
        agent = REGISTRY["sac"]
        setup = agent.setup(tiny("sac", autotune_alpha=False))
        hparams = agent.HParams.create(alpha=0.3)
        state = filled_state(agent, setup, hparams)
        state, metrics = jit_update(state, sample(setup, state, jax.random.key(8)),
                                    jax.random.key(9), hparams, setup)
        np.testing.assert_allclose(metrics["alpha"], 0.3, rtol=1e-6)

    def test_greedy_actions_are_deterministic_and_inside_the_box(self):
        for name in ("ddpg", "sac"):
            agent = REGISTRY[name]
            setup = agent.setup(tiny(name))
            state = fresh_state(agent, setup, agent.HParams.create())
            obs = 100.0 * jax.random.normal(jax.random.key(1), (16, 3))
            act = jax.vmap(lambda o, k: agent.greedy_act(state.params, o, k, setup))
            a1 = act(obs, jax.random.split(jax.random.key(2), 16))
            a2 = act(obs, jax.random.split(jax.random.key(3), 16))
            np.testing.assert_array_equal(a1, a2)
            assert a1.shape == (16, 1) and (np.abs(a1) <= 2.0).all()


class TestCollecting:

    @pytest.mark.parametrize("noise", ["gaussian", "ou"])
    def test_warm_up_is_uniform_then_the_policy_explores_inside_the_box(self, noise):
        agent = REGISTRY["ddpg"]
        setup = agent.setup(tiny("ddpg", exploration_noise=noise))
        hparams = agent.HParams.create(noise_scale=0.05)
        state = filled_state(agent, setup, hparams, steps=32)  # 64 env steps, 40 warm-up
        actions = np.asarray(state.buffer.storage.action)  # [rows, N, A], 32 rows: no wrap
        assert actions.shape[:2] == (32, 2) and (np.abs(actions) <= 2.0).all()
        warm, late = actions[:20].reshape(-1), actions[20:].reshape(-1)
        # Uniform on [-2, 2] has std 1.15; the untrained actor with 5% noise stays near 0.
        assert warm.std() > 0.8 and late.std() < 0.5
        if noise == "ou":
            assert np.abs(np.asarray(state.noise["ou"])).max() > 0.0

    def test_cq_acts_by_its_argmax_and_naf_by_mu(self):
        for name in ("cq-sample", "cq-grad", "naf"):
            agent = REGISTRY[name]
            setup = agent.setup(tiny(name))
            hparams = agent.HParams.create()
            state = fresh_state(agent, setup, hparams)
            obs = jnp.ones((3,))
            action = continuous_q.greedy(state.params, obs, jax.random.key(1), hparams, setup)
            assert action.shape == (1,) and abs(float(action[0])) <= 2.0
            grid = jnp.linspace(-2.0, 2.0, 401)[:, None]
            q = continuous_q.q_value(state.params, obs, grid, setup)
            best = float(jnp.max(q))
            got = float(continuous_q.q_value(state.params, obs, action, setup))
            assert got <= best + 1e-5
            # naf: mu exactly; sampling 8 candidates and ascent land near the grid max.
            tol = 1e-5 if name == "naf" else 0.05 * (abs(best) + 1.0)
            assert got >= best - tol, (name, got, best)


class TestTraining:

    @pytest.mark.parametrize("name, kwargs", [
        # td3: its update and the learning-rate sweep compile once (tests above and below);
        # naf is the continuous_q module of cq-grad with another method.
        ("cq-grad", {}), ("sac", {}),
        ("ddpg", dict(normalize_obs=True, exploration_noise="ou", n_step=3)),
    ])
    def test_runner_chunk_compiles_once(self, name, kwargs):
        agent, config = REGISTRY[name], tiny(name, **kwargs)
        state, _ = testing.run_chunks_compiling_once(agent, config, agent.HParams.create(), 3)
        assert int(state.env_steps) == config.total_timesteps
        testing.assert_tree_finite((state.params, state.target_params))
        # Learning from env step 40: 2 phases of 10 steps per iteration, 4 iterations.
        assert int(state.step) == 5

    @pytest.mark.parametrize("name", ["sac", "cq-sample"])
    def test_vmap_over_seeds_equals_separate_runs(self, name):
        agent, config = REGISTRY[name], tiny(name)
        keys = jax.random.split(jax.random.key(42), 2)
        train = runner.make_train(agent, config)
        _, metrics = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, agent.HParams.create())
        testing.assert_seeds_differ(np.asarray(metrics["q/taken"])[:, -1:], "q")
        testing.assert_vmap_matches_separate(train, keys, agent.HParams.create(),
                                             rtol=1e-5, atol=1e-5)

    def test_sweep_over_learning_rates_compiles_once(self):
        agent, config = REGISTRY["td3"], tiny("td3")
        train = runner.make_train(agent, config)
        hparams = jax.tree.map(lambda *x: jnp.stack(x), agent.HParams.create(learning_rate=1e-3),
                               agent.HParams.create(learning_rate=1e-2))
        chex.clear_trace_counter()
        sweep = jax.jit(chex.assert_max_traces(
            lambda key, hp: jax.vmap(train, in_axes=(None, 0))(key, hp), n=1))
        state, metrics = sweep(jax.random.key(0), hparams)
        assert metrics["q/taken"].shape == (2, config.num_iterations)
        c0, c1 = (jax.tree.leaves(jax.tree.map(lambda x: x[i], state.params["critic"]))
                  for i in range(2))
        assert any(not np.allclose(a, b) for a, b in zip(c0, c1))
