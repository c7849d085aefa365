"""Tests for `jaxrl.envs.wrappers`: each wrapper against independent NumPy bookkeeping.

`Echo` is a tiny test environment whose observation is the action just taken, so the
observations a wrapper sees (and the action an inner env receives) are chosen by the test.
"""

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

from jaxrl import envs
from jaxrl.config import ConfigError
from jaxrl.envs import ClipAction, EpisodeStatistics, FlattenObservation, NormalizeObservation


@struct.dataclass
class EchoState(environment.EnvState):
    last: jax.Array  # [*shape], the last observation
    time: int


@struct.dataclass
class EchoParams(environment.EnvParams):
    max_steps_in_episode: int = 5
    reset_value: float = 0.5


class Echo(environment.Environment):
    """Observation = the (continuous) action just taken; reward = its sum; truncation only.

    Unlike gymnax's Pendulum, the action is not clipped inside, so `ClipAction` is visible.
    """

    def __init__(self, shape=(3,), low=-1.0, high=1.0, max_steps=5):
        self.shape = tuple(shape)
        self.low = np.broadcast_to(np.asarray(low, np.float32), self.shape)
        self.high = np.broadcast_to(np.asarray(high, np.float32), self.shape)
        self.max_steps = max_steps

    @property
    def default_params(self):
        return EchoParams(max_steps_in_episode=self.max_steps)

    def action_space(self, params=None):
        return spaces.Box(self.low, self.high, self.shape, jnp.float32)

    def observation_space(self, params):
        return spaces.Box(self.low * 100, self.high * 100, self.shape, jnp.float32)

    def reset_env(self, key, params):
        obs = jnp.full(self.shape, params.reset_value, jnp.float32)
        return obs, EchoState(last=obs, time=0)

    def step_env(self, key, state, action, params):
        obs = jnp.asarray(action, jnp.float32).reshape(self.shape)
        return (obs, EchoState(last=obs, time=state.time + 1), jnp.sum(obs),
                jnp.asarray(False), {})


def _scan_steps(env, params, num_envs, actions_fn, num_steps, key):
    """Reset `num_envs` copies and step them `num_steps` times under one jit.

    `actions_fn(t, key) -> [N, ...]` gives the actions of step t. Returns the reset
    `(obs, state)` and the per-step outputs `(obs, state, reward, terminated, truncated,
    info)`, each with leading axes `[T, N]`.
    """
    reset_key, run_key = jax.random.split(key)
    obs0, state0 = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(reset_key, num_envs), params)

    def body(state, xs):
        t, step_key = xs
        act_key, env_key = jax.random.split(step_key)
        out = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(env_key, num_envs), state, actions_fn(t, act_key), params)
        return out[1], out

    _, outs = jax.lax.scan(body, state0, (jnp.arange(num_steps),
                                          jax.random.split(run_key, num_steps)))
    return (obs0, state0), outs


# ---------------------------------------------------------------------- EpisodeStatistics


def _numpy_episode_bookkeeping(rewards, terminated, truncated):
    """Expected `episode/done`, `episode/return`, `episode/length` per step, from raw data."""
    num_steps, num_envs = rewards.shape
    ret = np.zeros(num_envs, np.float32)
    length = np.zeros(num_envs, np.int64)
    done_t = np.zeros((num_steps, num_envs), bool)
    ret_t = np.zeros((num_steps, num_envs), np.float32)
    len_t = np.zeros((num_steps, num_envs), np.int64)
    completed = [[] for _ in range(num_envs)]
    for t in range(num_steps):
        for n in range(num_envs):
            ret[n] = np.float32(ret[n] + np.float32(rewards[t, n]))
            length[n] += 1
            if terminated[t, n] or truncated[t, n]:
                done_t[t, n] = True
                ret_t[t, n] = ret[n]
                len_t[t, n] = length[n]
                completed[n].append((float(ret[n]), int(length[n])))
                ret[n], length[n] = 0.0, 0
    return done_t, ret_t, len_t, completed


@pytest.mark.parametrize("env_id, kwargs, num_steps, exact", [
    ("CartPole-v1", {}, 300, True),
    ("probe/time-limit-endless", {"max_steps_in_episode": 7}, 50, True),
    ("Pendulum-v1", {}, 450, False),  # float rewards, truncation at 200
])
def test_episode_statistics_matches_numpy_bookkeeping(env_id, kwargs, num_steps, exact):
    base, params = envs.make(env_id, **kwargs)
    env = EpisodeStatistics(base)
    space = base.action_space(params)
    num_envs = 6
    sample = lambda t, key: jax.vmap(space.sample)(jax.random.split(key, num_envs))  # noqa: E731
    run = jax.jit(lambda key: _scan_steps(env, params, num_envs, sample, num_steps, key))
    _, (_, _, reward, terminated, truncated, info) = jax.device_get(run(jax.random.key(0)))

    done_t, ret_t, len_t, completed = _numpy_episode_bookkeeping(reward, terminated, truncated)
    assert sum(map(len, completed)) >= num_envs  # every env finished at least one episode
    np.testing.assert_array_equal(info["episode/done"], done_t)
    np.testing.assert_array_equal(info["episode/length"], len_t)
    if exact:
        np.testing.assert_array_equal(info["episode/return"], ret_t)
    else:
        np.testing.assert_allclose(info["episode/return"], ret_t, rtol=1e-5, atol=1e-3)
    for n in range(num_envs):
        first = int(np.argmax(done_t[:, n]))
        assert not info["episode/done"][:first, n].any()
        assert (info["episode/return"][:first, n] == 0).all()
        assert (info["episode/length"][:first, n] == 0).all()
        got = [(float(r), int(l)) for r, l, d in zip(info["episode/return"][:, n],
                                                     info["episode/length"][:, n],
                                                     info["episode/done"][:, n]) if d]
        np.testing.assert_allclose(got, completed[n], rtol=1e-5)
    if env_id == "CartPole-v1":  # reward 1 per step: the return is the length
        np.testing.assert_array_equal(info["episode/return"], info["episode/length"])
    if env_id == "probe/time-limit-endless":
        assert all(c == [(7.0, 7)] * (num_steps // 7) for c in completed)
        assert not terminated.any()


def test_episode_statistics_nests_inner_state_and_passes_obs_through():
    base, params = envs.make("CartPole-v1")
    env = EpisodeStatistics(base)
    key = jax.random.key(3)
    obs, state = env.reset(key, params)
    ref_obs, ref_state = base.reset(key, params)
    np.testing.assert_array_equal(obs, ref_obs)
    assert float(state.episode_return) == 0.0 and int(state.episode_length) == 0
    out = env.step(key, state, 1, params)
    ref = base.step(key, ref_state, 1, params)
    np.testing.assert_array_equal(out[0], ref[0])
    np.testing.assert_array_equal(out[1].env_state.x, ref[1].x)
    assert float(out[1].episode_return) == 1.0 and int(out[1].episode_length) == 1


# ---------------------------------------------------------------------- FlattenObservation


def test_flatten_observation_minatar_matches_reshaped_raw():
    base, params = envs.make("Breakout-MinAtar")
    env = FlattenObservation(base)
    space = env.observation_space(params)
    assert tuple(space.shape) == (400,)
    assert envs.env_spec(env, params).obs_shape == (400,)
    key = jax.random.key(0)
    obs, state = env.reset(key, params)
    ref_obs, ref_state = base.reset(key, params)
    assert obs.shape == (400,)
    np.testing.assert_array_equal(obs, np.asarray(ref_obs).reshape(-1))
    step, ref_step = jax.jit(env.step), jax.jit(base.step)
    for i, k in enumerate(jax.random.split(jax.random.key(1), 5)):
        obs, state, reward, term, trunc, info = step(k, state, i % 3, params)
        ref_obs, ref_state, ref_reward, *_, ref_info = ref_step(k, ref_state, i % 3, params)
        assert obs.shape == (400,) and info["final_observation"].shape == (400,)
        np.testing.assert_array_equal(obs, np.asarray(ref_obs).reshape(-1))
        np.testing.assert_array_equal(info["final_observation"],
                                      np.asarray(ref_info["final_observation"]).reshape(-1))
        assert float(reward) == float(ref_reward)


def test_flatten_observation_custom_2d_env_flattens_space_and_final_observation():
    low = np.array([[-1, -2, -3], [0, 0, 0]], np.float32)
    high = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    base = Echo(shape=(2, 3), low=low, high=high, max_steps=2)
    params = base.default_params
    env = FlattenObservation(base)
    space = env.observation_space(params)
    assert tuple(space.shape) == (6,)
    np.testing.assert_array_equal(np.broadcast_to(space.low, (6,)), (low * 100).reshape(-1))
    np.testing.assert_array_equal(np.broadcast_to(space.high, (6,)), (high * 100).reshape(-1))

    obs, state = env.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(obs, np.full(6, 0.5, np.float32))
    a1 = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    obs, state, _, _, trunc, info = env.step(jax.random.key(1), state, a1, params)
    assert not bool(trunc)
    np.testing.assert_array_equal(obs, a1.reshape(-1))
    np.testing.assert_array_equal(info["final_observation"], a1.reshape(-1))
    a2 = -a1
    obs, state, _, _, trunc, info = env.step(jax.random.key(2), state, a2, params)
    assert bool(trunc)  # max_steps=2: the reset observation comes back ...
    np.testing.assert_array_equal(obs, np.full(6, 0.5, np.float32))
    # ... and the pre-reset one, flattened in C order, is in final_observation.
    np.testing.assert_array_equal(info["final_observation"], a2.reshape(-1))


# ---------------------------------------------------------------------- NormalizeObservation

NORM_T, NORM_N, NORM_D, NORM_LIMIT = 24, 3, 3, 5


def _make_norm_run(clip):
    base = Echo(shape=(NORM_D,), low=-1e6, high=1e6, max_steps=NORM_LIMIT)
    env = NormalizeObservation(base, clip=clip)
    params = base.default_params

    @jax.jit
    def run(actions):  # actions [T, N, D]
        return _scan_steps(env, params, NORM_N, lambda t, key: actions[t], NORM_T,
                           jax.random.key(0))

    return run


_norm_run = _make_norm_run(clip=10.0)
_norm_run_clip2 = _make_norm_run(clip=2.0)


def _raw_seen(actions):
    """[T + 1, N, D] raw observations each env copy has returned: reset, then every step."""
    raw = np.array(actions, np.float64)
    steps = np.arange(1, NORM_T + 1)
    raw[steps % NORM_LIMIT == 0] = 0.5  # a truncation returns the reset observation
    return np.concatenate([np.full((1, NORM_N, NORM_D), 0.5), raw])


def _assert_close(actual, expected, *, rtol, atol, what):
    """`assert_allclose` with an elementwise `atol` array."""
    actual = np.asarray(actual, np.float64)
    bad = np.abs(actual - expected) > atol + rtol * np.abs(expected)
    assert not bad.any(), f"{what}: got {actual[bad]}, expected {expected[bad]}"


def _check_normalize(run, actions, clip, eps=1e-8):
    (obs0, state0), (obs, state, _, _, trunc, info) = jax.device_get(run(actions))
    seen = _raw_seen(actions)
    np.testing.assert_array_equal(trunc[:, 0], np.arange(1, NORM_T + 1) % NORM_LIMIT == 0)
    for t in range(NORM_T):
        prefix = seen[:t + 2]  # everything returned up to and including step t
        mean, var = prefix.mean(axis=0), prefix.var(axis=0)  # per env copy: [N, D]
        scale = np.abs(prefix).max(axis=0) + 1.0
        _assert_close(state.mean[t], mean, rtol=1e-3, atol=1e-3 * scale, what=f"mean[{t}]")
        _assert_close(state.var[t], var, rtol=1e-3, atol=1e-3 * scale**2, what=f"var[{t}]")
        # Outputs use the statistics that include this step's observation, clipped.
        std = np.sqrt(state.var[t].astype(np.float64) + eps)
        expected = np.clip((seen[t + 1] - state.mean[t]) / std, -clip, clip)
        np.testing.assert_allclose(obs[t], expected, rtol=1e-4, atol=1e-4)
        # final_observation is the pre-reset raw observation under the same statistics.
        final_raw = np.asarray(actions[t], np.float64)
        expected_final = np.clip((final_raw - state.mean[t]) / std, -clip, clip)
        np.testing.assert_allclose(info["final_observation"][t], expected_final,
                                   rtol=1e-4, atol=1e-4)
    assert np.all(np.abs(obs) <= clip) and np.all(np.abs(info["final_observation"]) <= clip)
    first = np.clip((0.5 - state0.mean) / np.sqrt(state0.var + eps), -clip, clip)
    np.testing.assert_allclose(obs0, first, atol=1e-4)
    return obs, info


def test_normalize_observation_statistics_per_env_copy():
    rng = np.random.default_rng(0)
    offsets = np.array([[0.0, 10.0, -5.0], [3.0, 3.0, 3.0], [-100.0, 0.0, 1.0]])
    scales = np.array([[1.0, 2.0, 0.1], [5.0, 0.5, 1.0], [10.0, 1.0, 0.0]])
    actions = (offsets + scales * rng.standard_normal((NORM_T, NORM_N, NORM_D))).astype(
        np.float32)
    obs, info = _check_normalize(_norm_run, actions, clip=10.0)
    # The copies really kept separate statistics: same raw reset value, different outputs.
    assert not np.allclose(obs[NORM_LIMIT - 1, 0], obs[NORM_LIMIT - 1, 1])
    # On a non-truncation step final_observation is the observation itself.
    np.testing.assert_allclose(info["final_observation"][0], obs[0], atol=1e-6)


def test_normalize_observation_clips_outliers():
    actions = np.zeros((NORM_T, NORM_N, NORM_D), np.float32)
    actions[:, :, 1] = np.linspace(-1, 1, NORM_T)[:, None]
    actions[7, :, 0] = 1e4  # an outlier far beyond 2 standard deviations
    actions[9, 1, 2] = -1e4  # step 9 truncates (limit 5), so it lands in final_observation
    obs, info = _check_normalize(_norm_run_clip2, actions, clip=2.0)
    np.testing.assert_array_equal(obs[7, :, 0], np.full(NORM_N, 2.0, np.float32))
    assert float(info["final_observation"][9, 1, 2]) == -2.0


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(actions=hnp.arrays(np.float32, (NORM_T, NORM_N, NORM_D),
                                     elements=st.floats(-50, 50, width=32, allow_subnormal=False)))
def test_normalize_observation_matches_numpy_on_any_sequence(actions):
    _check_normalize(_norm_run, actions, clip=10.0)


@pytest.mark.parametrize("kwargs", [{"clip": 0}, {"clip": -1.0}, {"clip": "5"},
                                    {"epsilon": 0.0}, {"epsilon": -1e-8}])
def test_normalize_observation_rejects_bad_arguments(kwargs):
    base, _ = envs.make("CartPole-v1")
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        NormalizeObservation(base, **kwargs)


# ---------------------------------------------------------------------- ClipAction


@pytest.mark.parametrize("big, bound", [(100.0, 2.0), (-100.0, -2.0)])
def test_clip_action_pendulum_large_action_equals_max_torque(big, bound):
    base, params = envs.make("Pendulum-v1")
    env = ClipAction(base, params)
    step = jax.jit(env.step)
    for seed in range(3):
        key = jax.random.key(seed)
        _, state = env.reset(key, params)
        out_big = step(key, state, jnp.array([big]), params)
        out_bound = step(key, state, jnp.array([bound]), params)
        for a, b in zip(jax.tree.leaves(out_big[:5]), jax.tree.leaves(out_bound[:5])):
            np.testing.assert_array_equal(a, b)
        assert float(out_big[1].last_u) == bound
        # An action inside the bounds is passed through unchanged.
        inside = step(key, state, jnp.array([0.7]), params)
        ref = jax.jit(base.step)(key, state, jnp.array([0.7]), params)
        for a, b in zip(jax.tree.leaves(inside[:5]), jax.tree.leaves(ref[:5])):
            np.testing.assert_allclose(a, b, rtol=1e-6)  # two compilations may fuse apart


_CLIP_LOW = np.array([[-1, -2, -3], [0, 0, -0.5]], np.float32)
_CLIP_HIGH = np.array([[1, 2, 3], [4, 5, 0.5]], np.float32)
_clip_env = Echo(shape=(2, 3), low=_CLIP_LOW, high=_CLIP_HIGH, max_steps=100)
_clip_params = _clip_env.default_params


@jax.jit
def _echo_clipped_and_raw(action):
    _, state = _clip_env.reset(jax.random.key(0), _clip_params)
    clipped = ClipAction(_clip_env, _clip_params).step(jax.random.key(1), state, action,
                                                       _clip_params)[0]
    raw = _clip_env.step(jax.random.key(1), state, action, _clip_params)[0]
    return clipped, raw


@hypothesis.settings(max_examples=30, deadline=None)
# XLA on CPU flushes subnormal floats to zero, so draw normal floats only.
@hypothesis.given(action=hnp.arrays(np.float32, (2, 3),
                                   elements=st.floats(-10, 10, width=32, allow_subnormal=False)))
def test_clip_action_clips_each_dimension_to_its_own_bounds(action):
    clipped, raw = _echo_clipped_and_raw(action)
    np.testing.assert_array_equal(clipped, np.clip(action, _CLIP_LOW, _CLIP_HIGH))
    np.testing.assert_array_equal(raw, action)  # the inner env really sees what it is given


@pytest.mark.parametrize("env_id", ["CartPole-v1", "probe/action-reward", "Breakout-MinAtar"])
def test_clip_action_refuses_discrete_action_spaces(env_id):
    base, params = envs.make(env_id)
    with pytest.raises(ConfigError, match="Discrete"):
        ClipAction(base, params)
    with pytest.raises(ConfigError):
        ClipAction(base)


@pytest.mark.parametrize("wrapper", [EpisodeStatistics, FlattenObservation,
                                     NormalizeObservation, ClipAction])
def test_wrappers_refuse_non_environments(wrapper):
    with pytest.raises(ConfigError, match="gymnax Environment"):
        wrapper(object())


def test_wrappers_compose_and_delegate():
    base, params = envs.make("Pendulum-v1")
    env = EpisodeStatistics(NormalizeObservation(ClipAction(base, params), clip=5.0))
    assert env.action_space(params).shape == base.action_space(params).shape
    assert env.default_params == params
    assert env.num_actions == base.num_actions
    obs, state = env.reset(jax.random.key(0), params)
    obs, state, reward, term, trunc, info = jax.jit(env.step)(
        jax.random.key(1), state, jnp.array([50.0]), params)
    assert obs.shape == (3,) and np.all(np.abs(np.asarray(obs)) <= 5.0)
    assert float(state.env_state.env_state.last_u) == 2.0
    assert {"episode/done", "episode/return", "episode/length"} <= set(info)


def test_transplanted_statistics_are_those_of_all_observations_seen():
    from jaxrl import rollout
    from jaxrl.envs.wrappers import NormalizeObservationState, transplant_statistics

    base, params = envs.make("CartPole-v1")
    env = envs.EpisodeStatistics(NormalizeObservation(base))
    keys = jax.random.split(jax.random.key(0), 3)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

    def run(state, key):
        def step(st, k):
            a_key, s_key = jax.random.split(k)
            action = jax.random.randint(a_key, (3,), 0, 2)
            _, st, *_ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(s_key, 3), st, action, params)
            return st, st.env_state.last_obs
        return jax.lax.scan(step, state, jax.random.split(key, 50))

    first_obs = state.env_state.last_obs
    state, seen = jax.jit(run)(state, jax.random.key(1))
    all_obs = np.concatenate([np.asarray(first_obs)[None], np.asarray(seen)]).reshape(-1, 4)
    _, target = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(2), 5),
                                                        params)
    moved = transplant_statistics(target, state)
    inner = moved.env_state
    assert isinstance(inner, NormalizeObservationState)
    np.testing.assert_allclose(inner.mean, np.broadcast_to(all_obs.mean(0), (5, 4)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(inner.var, np.broadcast_to(all_obs.var(0), (5, 4)),
                               rtol=1e-3, atol=1e-5)
    np.testing.assert_array_equal(inner.count, np.full(5, all_obs.shape[0]))
    # The evaluation's first observation is re-normalised with those statistics.
    obs = jax.vmap(lambda st: rollout.renormalized_observation(env, st, None))(moved)
    expected = (np.asarray(inner.last_obs) - all_obs.mean(0)) / np.sqrt(all_obs.var(0) + 1e-8)
    np.testing.assert_allclose(obs, np.clip(expected, -10, 10), rtol=1e-3, atol=1e-4)


def test_wrappers_can_be_copied():
    import copy
    import pickle

    env = envs.EpisodeStatistics(NormalizeObservation(envs.make("CartPole-v1")[0]))
    assert copy.deepcopy(env).num_actions == 2
    assert pickle.loads(pickle.dumps(env)).num_actions == 2
