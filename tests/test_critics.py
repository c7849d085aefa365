"""Tabular critics: Sutton & Barto's Example 6.4, a NumPy MC reference, and batch TD's
fixed point against the certainty-equivalence Bellman equation solved with NumPy."""

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import numpy as np
import optax
from absl.testing import parameterized

from jaxrl import critics, returns
from jaxrl.types import Transition

S_A, S_B = 0, 1


def example_6_4():
    """The 8 episodes of Sutton & Barto Example 6.4 as one stream of transitions, gamma 1.

    One `A, 0, B, 0, END`, six `B, 1, END`, one `B, 0, END`. A terminal transition has
    discount 0 and names state 0 as its (ignored) next state.
    """
    states_tm1 = np.array([S_A, S_B] + [S_B] * 6 + [S_B], np.int32)
    states_t = np.array([S_B, S_A] + [S_A] * 6 + [S_A], np.int32)
    r = np.array([0.0, 0.0] + [1.0] * 6 + [0.0], np.float32)
    discount = np.array([1.0, 0.0] + [0.0] * 6 + [0.0], np.float32)
    cut = (discount == 0).astype(np.float32)
    return states_tm1, r, discount, states_t, cut


def numpy_mc(states, g, num_states):
    """Reference: accumulate sums and counts with a loop; unseen states are 0."""
    total = np.zeros(num_states)
    count = np.zeros(num_states)
    for s, x in zip(states, g):
        total[s] += x
        count[s] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def certainty_equivalence_values(states_tm1, r, discount, states_t, num_states):
    """Reference: solve V = R_hat + M V for the empirical model of the batch.

    `R_hat(s)` is the mean reward out of s and `M[s, s']` the mean of `discount` over the
    visits from s that went to s' (probability times discount). Unvisited states: V = 0.
    """
    count = np.bincount(states_tm1, minlength=num_states).astype(np.float64)
    reward = np.zeros(num_states)
    m = np.zeros((num_states, num_states))
    for s, x, d, s2 in zip(states_tm1, r, discount, states_t):
        reward[s] += x / count[s]
        m[s, s2] += d / count[s]
    visited = count > 0
    m[~visited] = 0.0  # rows of unvisited states read V(s) = 0
    return np.linalg.solve(np.eye(num_states) - m, reward), count


class TabularMcTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_example_6_4(self):
        states_tm1, r, discount, _, cut = example_6_4()
        g = returns.discounted_returns(r, discount, cut, np.zeros_like(r))
        np.testing.assert_allclose(g, [0.0, 0.0] + [1.0] * 6 + [0.0])
        mc = self.variant(critics.tabular_mc_values, static_argnames="num_states")
        v = mc(states_tm1, g, num_states=2)
        np.testing.assert_allclose(v, [0.0, 0.75], atol=1e-3)

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_numpy_loop_and_unseen_states_are_zero(self):
        rng = np.random.default_rng(0)
        states = rng.integers(0, 6, size=40).astype(np.int32)  # state 6 is never seen
        g = rng.normal(size=40).astype(np.float32)
        mc = self.variant(critics.tabular_mc_values, static_argnames="num_states")
        v = np.asarray(mc(states, g, num_states=7))
        np.testing.assert_allclose(v, numpy_mc(states, g, 7), rtol=1e-5, atol=1e-6)
        self.assertEqual(v[6], 0.0)


class TabularTd0BatchTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_example_6_4(self):
        states_tm1, r, discount, states_t, _ = example_6_4()
        td = self.variant(critics.tabular_td0_batch,
                          static_argnames=("num_states", "num_sweeps"))
        v = td(states_tm1, r, discount, states_t, num_states=2, num_sweeps=300, step_size=0.1)
        np.testing.assert_allclose(v, [0.75, 0.75], atol=1e-3)

    @chex.variants(with_jit=True, without_jit=True)
    def test_traced_sweep_count_and_step_size(self):
        states_tm1, r, discount, states_t, _ = example_6_4()
        td = self.variant(critics.tabular_td0_batch, static_argnames="num_states")
        v = td(states_tm1, r, discount, states_t, num_states=3, num_sweeps=np.int32(300),
               step_size=np.float32(0.1))
        np.testing.assert_allclose(v, [0.75, 0.75, 0.0], atol=1e-3)

    def test_one_sweep_is_the_summed_td0_increment(self):
        states_tm1, r, discount, states_t, _ = example_6_4()
        v = critics.tabular_td0_batch(states_tm1, r, discount, states_t, 2, num_sweeps=1,
                                      step_size=0.1)
        # From V = 0 every delta is the reward: A gets 0, B gets 0.1 * 6.
        np.testing.assert_allclose(v, [0.0, 0.6], rtol=1e-6)


B, NUM_STATES = 16, 4
_td0 = jax.jit(critics.tabular_td0_batch, static_argnames=("num_states", "num_sweeps"))


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(
    states_tm1=hnp.arrays(np.int32, (B,), elements=st.integers(0, NUM_STATES - 1)),
    states_t=hnp.arrays(np.int32, (B,), elements=st.integers(0, NUM_STATES - 1)),
    r=hnp.arrays(np.float32, (B,), elements=st.floats(-1, 1, width=32)),
    discount=hnp.arrays(np.float32, (B,), elements=st.sampled_from([0.0, 0.9])))
def test_batch_td_fixed_point_is_certainty_equivalence(states_tm1, states_t, r, discount):
    expected, count = certainty_equivalence_values(states_tm1, r, discount, states_t,
                                                   NUM_STATES)
    # step_size * max N(s) = 1: a damped Jacobi sweep that contracts by at least
    # 1 - (1 - 0.9) / B per sweep, so 3000 sweeps leave < 1e-7 of the initial error.
    v = _td0(states_tm1, r, discount, states_t, num_states=NUM_STATES, num_sweeps=3000,
             step_size=np.float32(1.0 / count.max()))
    np.testing.assert_allclose(v, expected, rtol=1e-4, atol=1e-4)


class FitValuesTest(parameterized.TestCase):
    """Function-approximation prediction reproduces the tabular answers of Example 6.4."""

    @staticmethod
    def example_traj():
        states_tm1, r, discount, states_t, cut = example_6_4()
        one_hot = lambda s: jax.nn.one_hot(s, 2)[:, None, :]  # noqa: E731 - [T, 1, 2]
        terminated = (discount == 0)[:, None]
        return Transition(obs=one_hot(states_tm1), action=np.zeros((9, 1), np.int32),
                          reward=r[:, None], terminated=terminated,
                          truncated=np.zeros_like(terminated), next_obs=one_hot(states_t))

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("monte_carlo", 1.0, [0.0, 0.75]),
                                    ("td0", 0.0, [0.75, 0.75]))
    def test_linear_critic_on_example_6_4(self, lambda_, expected):
        value_fn = lambda w, obs: obs @ w  # noqa: E731 - a one-hot linear critic
        fit = self.variant(lambda w: critics.fit_values(
            value_fn, w, self.example_traj(), 1.0, lambda_, optax.sgd(2.0), 400))
        w, losses = fit(np.zeros(2, np.float32))
        np.testing.assert_allclose(w, expected, atol=1e-3)
        assert losses[-1] <= losses[0]

    def test_targets_are_td0_and_monte_carlo_at_the_extremes(self):
        r = np.array([1.0, 2.0, 3.0], np.float32)
        disc = np.array([0.5, 0.5, 0.0], np.float32)
        cut = np.array([0.0, 0.0, 1.0], np.float32)
        v_tm1 = np.array([10.0, 20.0, 30.0], np.float32)
        v_t = np.array([20.0, 30.0, 99.0], np.float32)
        np.testing.assert_allclose(critics.value_targets(r, disc, cut, v_tm1, v_t, 0.0),
                                   r + disc * v_t, rtol=1e-6)
        np.testing.assert_allclose(critics.value_targets(r, disc, cut, v_tm1, v_t, 1.0),
                                   [1 + .5 * 2 + .25 * 3, 2 + .5 * 3, 3.0], rtol=1e-6)
