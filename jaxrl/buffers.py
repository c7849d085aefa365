"""Device-resident replay buffers: uniform and proportional prioritized, over sequence windows.

This module owns experience replay for off-policy agents. A buffer is a `Buffer` bundle of pure
functions (`init`, `add`, `sample`, `can_sample`, `update_priorities`) built by `make_uniform`
or `make_prioritized` and closed over by the agent; its array state is a frozen
`BufferState`, so it works inside `jax.jit` and `lax.scan` and `jax.vmap`s over seeds (one
buffer per seed). Storage is time-major per env, leaves `[R, N, ...]` with
`R = capacity // num_envs` rows: each `add` writes one row (one env step of N parallel envs)
at the ring head. A sample is B windows of L consecutive rows of one env column, never
crossing the write head; the buffer knows nothing of episodes (n-step targets cut there).

We write our own instead of using flashbax: flashbax 0.1.3, the latest on PyPI, can sample
zero-priority items from its float32 sum tree and predates a prioritized-replay max-priority
fix, and it pulls in tensorstore. The sum tree here is a plain `[2P]` float32 array with
functions `sum_tree_set` and `sum_tree_find` that keep every parent exactly equal to the
float32 sum of its children and never descend into a zero-mass subtree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl.config import ConfigError, check_int, check_real
from jaxrl.types import PRNGKey

# Indices are int32; the sum tree has 2P entries with P a power of two.
_MAX_LEAVES = 2**30


@struct.dataclass
class BufferState:
    """Replay state shared by both buffers.

    Attributes:
      storage: the stored pytree, leaves `[R, N, ...]` (row = env step, column = env).
      write_index: int32 scalar, the row the next `add` writes (the ring head).
      size: int32 scalar, rows written so far, saturating at R.
    """

    storage: Any
    write_index: jax.Array
    size: jax.Array


@struct.dataclass
class PrioritizedBufferState(BufferState):
    """`BufferState` plus the priorities of proportional prioritized replay.

    Attributes:
      sum_tree: [2P] float32 sum tree over the R * N window starts (flat index
        `row * N + env`, leaves `P + flat`); a leaf is > 0 iff its window is complete.
      max_priority: float32 scalar, the largest priority ever stored (new windows enter
        with it); 1.0 initially.
    """

    sum_tree: jax.Array
    max_priority: jax.Array


@struct.dataclass
class Sample:
    """A batch of B windows of L consecutive steps of one env each.

    Attributes:
      items: the stored pytree with leaves `[B, L, ...]`.
      indices: [B] int32 flat slot index `row * N + env` of each window's first item; pass
        it back to `update_priorities`.
      weights: [B] float32 importance weights, normalised by their batch maximum (all ones
        for uniform replay).
    """

    items: Any
    indices: jax.Array
    weights: jax.Array


class Buffer(NamedTuple):
    """The functions of one replay buffer; closed over, never passed through `jit`.

    Attributes:
      init: `init(example_item) -> state`; the example is one transition (no leading axis).
      add: `add(state, items) -> state`; items leaves `[N, ...]`, one env step of N envs.
      sample: `sample(state, key, beta) -> Sample`; beta is the importance exponent
        (ignored by uniform replay).
      can_sample: `can_sample(state) -> bool scalar`: at least `min_size` complete windows.
      update_priorities: `update_priorities(state, indices, td) -> state`; uniform replay
        returns the state unchanged.
    """

    init: Callable[[Any], BufferState]
    add: Callable[[BufferState, Any], BufferState]
    sample: Callable[[BufferState, PRNGKey, jax.Array], Sample]
    can_sample: Callable[[BufferState], jax.Array]
    update_priorities: Callable[[BufferState, jax.Array, jax.Array], BufferState]


def _next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def sum_tree_init(num_leaves: int) -> jax.Array:
    """An all-zero sum tree with room for `num_leaves` leaves.

    Layout: index 1 is the root, node i has children 2i and 2i + 1, the leaves are
    `P .. 2P - 1` with P the next power of two >= num_leaves; index 0 is unused.

    Returns:
      [2P] float32 zeros.
    """
    return jnp.zeros((2 * _next_power_of_two(num_leaves),), jnp.float32)


def sum_tree_total(tree: jax.Array) -> jax.Array:
    """The total mass (the root) of a `[2P]` sum tree: a float32 scalar."""
    return tree[1]


def sum_tree_leaves(tree: jax.Array) -> jax.Array:
    """The `[P]` leaves of a `[2P]` sum tree."""
    return tree[tree.shape[0] // 2:]


def _last_write_values(indices: jax.Array, values: jax.Array, num_slots: int) -> jax.Array:
    """For each position, the value of the last position with the same index.

    Scattering these values is deterministic whatever order the scatter applies duplicates
    in, since all writes to one slot carry the same value. A scatter-max of positions into
    `num_slots` slots (indices in `[0, num_slots)`), O(K + num_slots): the all-pairs `[K, K]`
    comparison it replaces let XLA:CPU fuse the sum-tree descent that computed `indices`
    into the comparison and redo it K times per index (4-5% of a Rainbow update).
    """
    pos = jnp.arange(indices.shape[0], dtype=jnp.int32)
    last = jnp.full((num_slots,), -1, jnp.int32).at[indices].max(pos)
    return values[last[indices]]


def _write_leaves(tree: jax.Array, indices: jax.Array, values: jax.Array) -> jax.Array:
    """Write leaves whose duplicates (if any) carry equal values, then recompute ancestors.

    Parents are recomputed from their children level by level along the written paths, not
    adjusted by deltas, so every parent stays exactly the float32 sum of its children.
    """
    num_leaves = tree.shape[0] // 2
    node = indices.astype(jnp.int32) + num_leaves
    tree = tree.at[node].set(values.astype(tree.dtype))
    for _ in range(num_leaves.bit_length() - 1):  # tree depth, static
        node = node // 2
        # Siblings share a parent: they write the same (already final) child sum.
        tree = tree.at[node].set(tree[2 * node] + tree[2 * node + 1])
    return tree


def sum_tree_set(tree: jax.Array, indices: jax.Array, values: jax.Array) -> jax.Array:
    """Set a batch of leaves of a sum tree; for duplicate indices the last one wins.

    Args:
      tree: [2P] float32 sum tree (see `sum_tree_init`).
      indices: [K] int leaf indices in [0, P); duplicates allowed.
      values: [K] non-negative leaf values.

    Returns:
      [2P] the updated tree; every parent equals the float32 sum of its two children.
    """
    chex.assert_rank([tree, indices, values], 1)
    chex.assert_equal_shape([indices, values])
    return _write_leaves(tree, indices,
                         _last_write_values(indices, values, tree.shape[0] // 2))


def sum_tree_find(tree: jax.Array, targets: jax.Array) -> jax.Array:
    """Leaf index where each target falls in the prefix sums of the leaves (inverse CDF).

    Descends from the root: go left when the target is below the left subtree's mass, else
    subtract that mass and go right. Guard against float32 rounding (a parent is rounded,
    so `target - left` may exceed the right mass): a subtree of zero mass is never entered
    (left is taken only if its mass is > 0, right only if its mass is > 0 or left is empty),
    so as long as the total is > 0 the result is a leaf with positive value, whatever the
    targets are (even >= total or negative).

    Args:
      tree: [2P] float32 sum tree.
      targets: [B] float32 values in [0, total).

    Returns:
      [B] int32 leaf indices in [0, P).
    """
    chex.assert_rank([tree, targets], 1)
    num_leaves = tree.shape[0] // 2
    node = jnp.ones(targets.shape, jnp.int32)
    u = targets.astype(tree.dtype)
    for _ in range(num_leaves.bit_length() - 1):
        left = tree[2 * node]
        right = tree[2 * node + 1]
        go_left = (left > 0) & ((u < left) | (right <= 0))
        u = jnp.where(go_left, u, u - left)
        node = 2 * node + jnp.where(go_left, 0, 1)
    return node - num_leaves


class _Layout(NamedTuple):
    rows: int  # R
    num_envs: int  # N
    batch_size: int  # B
    sequence_length: int  # L
    min_size: int


def _layout(capacity, num_envs, batch_size, sequence_length, min_size) -> _Layout:
    """Validate the static sizes shared by both buffers (`min_size` defaults to B)."""
    for name, value in (("capacity", capacity), ("num_envs", num_envs),
                        ("batch_size", batch_size), ("sequence_length", sequence_length)):
        check_int(name, value)
    if capacity % num_envs:
        raise ConfigError(f"capacity must be a multiple of num_envs={num_envs} (one row of "
                          f"num_envs transitions per add), got {capacity}")
    if capacity < num_envs * sequence_length:
        raise ConfigError(f"capacity must be at least num_envs * sequence_length = "
                          f"{num_envs * sequence_length} (one full window per env), "
                          f"got {capacity}")
    if capacity > _MAX_LEAVES:
        raise ConfigError(f"capacity must be at most 2**30, got {capacity}")
    max_windows = (capacity // num_envs - sequence_length + 1) * num_envs
    if min_size is None:
        if batch_size > max_windows:
            raise ConfigError(f"batch_size must be at most the number of complete windows a "
                              f"full buffer holds ({max_windows}) when min_size is not given, "
                              f"got {batch_size}")
        min_size = batch_size
    check_int("min_size", min_size)
    if min_size > max_windows:
        raise ConfigError(f"min_size must be at most the number of complete windows a full "
                          f"buffer holds ({max_windows}), got {min_size}")
    return _Layout(capacity // num_envs, num_envs, batch_size, sequence_length, min_size)


def _empty(example_item: Any, layout: _Layout) -> dict[str, Any]:
    """The `BufferState` fields of an empty buffer: zero storage `[R, N, ...]`, counters 0."""
    if not jax.tree.leaves(example_item):
        raise ConfigError("example_item must be a pytree with at least one array leaf")
    storage = jax.tree.map(
        lambda x: jnp.zeros((layout.rows, layout.num_envs) + jnp.shape(x), jnp.asarray(x).dtype),
        example_item)
    return dict(storage=storage, write_index=jnp.zeros((), jnp.int32),
                size=jnp.zeros((), jnp.int32))


def _write_row(state: BufferState, items: Any, layout: _Layout) -> BufferState:
    """Write one row of N transitions at the head; advance the head and the size."""
    expected = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), state.storage)
    chex.assert_trees_all_equal_structs(items, state.storage)
    chex.assert_trees_all_equal_shapes_and_dtypes(items, expected)
    storage = jax.tree.map(
        lambda s, x: jax.lax.dynamic_update_index_in_dim(s, x, state.write_index, 0),
        state.storage, items)
    return state.replace(
        storage=storage,
        write_index=(state.write_index + 1) % layout.rows,
        size=jnp.minimum(state.size + 1, layout.rows))


def _num_windows(state: BufferState, layout: _Layout) -> jax.Array:
    """int32 scalar: complete windows, `(size - L + 1) * N`, or 0 below L rows."""
    return jnp.maximum(state.size - layout.sequence_length + 1, 0) * layout.num_envs


def _gather(state: BufferState, start_row: jax.Array, env: jax.Array, layout: _Layout):
    """Items `[B, L, ...]` of the windows starting at `start_row` [B] in column `env` [B]."""
    rows = (start_row[:, None] + jnp.arange(layout.sequence_length)[None, :]) % layout.rows
    return jax.tree.map(lambda s: s[rows, env[:, None]], state.storage)


def _can_sample(state: BufferState, layout: _Layout) -> jax.Array:
    return _num_windows(state, layout) >= layout.min_size


def make_uniform(*, capacity: int, num_envs: int, batch_size: int, sequence_length: int = 1,
                 min_size: int | None = None) -> Buffer:
    """A uniform replay buffer of `capacity` transitions over windows of `sequence_length`.

    Each sampled window is drawn uniformly among the complete ones: a start row uniformly
    among the `size - L + 1` rows (in ring order from the oldest) whose L rows are
    consecutive data, and an env column uniformly; with replacement.

    Args:
      capacity: transitions stored, a multiple of `num_envs`; R = capacity // num_envs rows.
      num_envs: N, transitions per `add` (parallel envs).
      batch_size: B, windows per sample.
      sequence_length: L, consecutive steps per window (n for n-step targets).
      min_size: complete windows needed before `can_sample` (default `batch_size`).

    Returns:
      A `Buffer`; `update_priorities` returns the state unchanged and weights are ones.

    Raises:
      ConfigError: a size that is not a positive int, or inconsistent sizes.
    """
    layout = _layout(capacity, num_envs, batch_size, sequence_length, min_size)

    def init(example_item: Any) -> BufferState:
        return BufferState(**_empty(example_item, layout))

    def add(state: BufferState, items: Any) -> BufferState:
        return _write_row(state, items, layout)

    def sample(state: BufferState, key: PRNGKey, beta: jax.Array | float = 0.0) -> Sample:
        del beta  # uniform replay needs no importance correction
        # One draw over the complete windows, numbered from the oldest row: a uniform start
        # row among the size - L + 1 valid ones and a uniform env column.
        num_windows = jnp.maximum(_num_windows(state, layout), 1)
        window = jax.random.randint(key, (layout.batch_size,), 0, num_windows)
        oldest = (state.write_index - state.size) % layout.rows
        start_row = (oldest + window // layout.num_envs) % layout.rows
        env = window % layout.num_envs
        return Sample(items=_gather(state, start_row, env, layout),
                      indices=(start_row * layout.num_envs + env).astype(jnp.int32),
                      weights=jnp.ones((layout.batch_size,), jnp.float32))

    def can_sample(state: BufferState) -> jax.Array:
        return _can_sample(state, layout)

    def update_priorities(state: BufferState, indices: jax.Array, td: jax.Array) -> BufferState:
        del indices, td
        return state

    return Buffer(init, add, sample, can_sample, update_priorities)


def make_prioritized(*, capacity: int, num_envs: int, batch_size: int, sequence_length: int = 1,
                     alpha: float = 0.6, eps: float = 1e-6,
                     min_size: int | None = None) -> Buffer:
    """A proportional prioritized replay buffer over windows of `sequence_length`.

    Schaul et al. 2016, "Prioritized Experience Replay", proportional variant: window i is
    drawn with probability `P(i) = p_i / sum_k p_k` (eq. 1 with the exponent folded into
    p_i), `p_i = |td_i|^alpha + eps` (the paper writes `(|td_i| + eps)^alpha`; we follow our
    issue), and new windows enter at the largest priority seen so far (Algorithm 1, line 6).
    Sampling is stratified: the total is cut into B equal segments with one uniform draw in
    each. Importance weights (section 3.4) `w_i = (M * P(i))^-beta / max_j w_j`, with M the
    number of complete windows and the max over the sampled batch (not over the whole
    buffer), which reduces to `(min_j p_j / p_i)^beta` within the batch.

    A window is the priority of its first slot: the leaf of (row r, env e) is > 0 iff the
    L rows from r hold consecutive data. Writing row h zeroes row h's leaves (its window
    would now span the head) and gives row h - L + 1 the max priority once L rows have
    been written (for L = 1, row h itself).

    Args:
      capacity, num_envs, batch_size, sequence_length, min_size: as in `make_uniform`.
      alpha: priority exponent in [0, 1]; 0 gives uniform sampling.
      eps: positive constant added to every priority, so no complete window starves.

    Returns:
      A `Buffer`. `update_priorities(state, indices, td)` sets `|td|^alpha + eps` (`td`
      finite) at the sampled `indices` [B], the last of duplicates winning, and raises
      `max_priority` to the largest stored; a window that has become incomplete since it
      was sampled keeps priority 0 (we keep no versions). Before `can_sample`, `sample`'s
      contents are unspecified, but in range and finite.

    Raises:
      ConfigError: as `make_uniform`, or alpha outside [0, 1], or eps not > 0.
    """
    layout = _layout(capacity, num_envs, batch_size, sequence_length, min_size)
    alpha = check_real("alpha", alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha!r}")
    eps = check_real("eps", eps)
    if not np.float32(eps) > 0:
        raise ConfigError(f"eps must be > 0 (and representable in float32), got {eps!r}")
    rows, n, length = layout.rows, layout.num_envs, layout.sequence_length
    env_ids = jnp.arange(n, dtype=jnp.int32)

    def init(example_item: Any) -> PrioritizedBufferState:
        return PrioritizedBufferState(**_empty(example_item, layout),
                                      sum_tree=sum_tree_init(capacity),
                                      max_priority=jnp.ones((), jnp.float32))

    def add(state: PrioritizedBufferState, items: Any) -> PrioritizedBufferState:
        head = state.write_index
        new = _write_row(state, items, layout)
        if length == 1:
            leaves = head * n + env_ids
            values = jnp.full((n,), state.max_priority)
        else:
            # Two distinct rows (L <= R); below L rows the start row is unwritten (already 0).
            start = (head - (length - 1)) % rows
            leaves = jnp.concatenate([head * n + env_ids, start * n + env_ids])
            start_priority = jnp.where(new.size >= length, state.max_priority, 0.0)
            values = jnp.concatenate([jnp.zeros((n,), jnp.float32),
                                      jnp.full((n,), start_priority, jnp.float32)])
        return new.replace(sum_tree=_write_leaves(state.sum_tree, leaves, values))

    def sample(state: PrioritizedBufferState, key: PRNGKey,
               beta: jax.Array | float) -> Sample:
        b = layout.batch_size
        total = sum_tree_total(state.sum_tree)
        targets = (jnp.arange(b) + jax.random.uniform(key, (b,))) * (total / b)
        # Stratified draws may round up to the total; keep them inside [0, total).
        targets = jnp.minimum(targets, jnp.nextafter(total, jnp.float32(0.0)))
        # Leaves past the capacity are 0 and never found while total > 0; the clip keeps a
        # sample drawn before `can_sample` (unspecified contents) in range.
        leaf = jnp.minimum(sum_tree_find(state.sum_tree, targets), capacity - 1)
        p = sum_tree_leaves(state.sum_tree)[leaf]
        # (M P(i))^-beta / max_j (M P(j))^-beta: M and the total cancel within the batch.
        # The `where` keeps weights finite (ones) for an empty tree.
        ratio = jnp.where(p > 0, jnp.min(p) / p, 1.0)
        weights = jnp.power(ratio, beta).astype(jnp.float32)
        return Sample(items=_gather(state, leaf // n, leaf % n, layout),
                      indices=leaf.astype(jnp.int32), weights=weights)

    def can_sample(state: PrioritizedBufferState) -> jax.Array:
        return _can_sample(state, layout)

    def update_priorities(state: PrioritizedBufferState, indices: jax.Array,
                          td: jax.Array) -> PrioritizedBufferState:
        chex.assert_rank([indices, td], 1)
        chex.assert_equal_shape([indices, td])
        priority = jnp.power(jnp.abs(td).astype(jnp.float32), alpha) + jnp.float32(eps)
        priority = _last_write_values(indices, priority, state.sum_tree.shape[0] // 2)
        current = sum_tree_leaves(state.sum_tree)[indices]
        # Never revive a window overwritten since it was sampled.
        priority = jnp.where(current > 0, priority, 0.0)
        return state.replace(
            sum_tree=_write_leaves(state.sum_tree, indices, priority),
            max_priority=jnp.maximum(state.max_priority, jnp.max(priority)))

    return Buffer(init, add, sample, can_sample, update_priorities)


def is_full(state: BufferState) -> jax.Array:
    """bool scalar: every row of one buffer's ring has been written (vmap it over seeds)."""
    rows = jax.tree.leaves(state.storage)[0].shape[0]
    return state.size >= rows
