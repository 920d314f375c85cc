"""Exact path-dependent TreeSHAP for a forest of scikit-learn trees, compiled with numba.

The game shap's ``feature_perturbation="tree_path_dependent"`` explains: for a set S of known
features, a tree's value is the sum over its leaves of ``v * prod_j (o_j if j in S else z_j)``,
the product over the UNIQUE features j on the leaf's path, where ``o_j`` is 1 when x follows every
edge of j on that path and ``z_j`` the product of those edges' cover ratios (cover =
``weighted_n_node_samples``). Each leaf is a product game, whose Shapley value for its feature i is

    v * (o_i - z_i) * integral_0^1 prod_{j != i} (z_j + (o_j - z_j) t) dt

(the Shapley weights k!(d-k-1)!/d! are Beta integrals). The integrand is a polynomial of degree
d-1, so Gauss-Legendre quadrature with ceil(d/2) nodes is exact. Two facts keep it cheap:

* a feature with o_j = 0 contributes the factor ``z_j (1 - t)``, so every such feature of a leaf
  gets the same value ``-v * integral F(t) / (1 - t) dt`` (no per-feature work);
* for o_i = 1 the product without i is ``F(t) / g_i(t)``, and ``g_i(t) >= z_i > 0``.

One depth-first walk per tree and row keeps the path's unique features (merged z), split into
those x follows and those it does not, with an undo log per depth, so nothing is precomputed per
leaf: the engine holds only the node arrays. The kernel releases the GIL and
takes a range of trees, so the engine runs ranges on several threads (numba's own parallel
backend compiles for many seconds and refuses concurrent callers); each tree writes its own slice
and the slices are summed in tree order, so the result does not depend on the thread schedule.
x is compared as float32 widened to float64, exactly as scikit-learn's trees compare it
(``x <= threshold`` goes left).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.integer[Any]]  # node arrays are int32, scratch int64
LANES = 4  # quadrature nodes handled together (unrolled by hand: the loops over features remain)


def quadrature_tables(max_depth: int) -> tuple[Floats, Floats]:
    """Gauss-Jacobi rules on [0, 1] for the weight (1 - t)^a: ``nodes[a, n]`` and
    ``weights[a, n]`` hold the n-node rule (exact for polynomials of degree 2n - 1), for
    a = 0..max_depth and n = 1..ceil(max_depth / 2)."""
    from scipy.special import roots_jacobi

    max_nodes = max((max_depth + 1) // 2, 1)
    # Padded to whole groups of LANES nodes (weight 0 at t = 1/2): the kernel works in groups.
    lanes = -(-max_nodes // LANES) * LANES
    nodes = np.full((max_depth + 1, max_nodes + 1, lanes), 0.5)
    weights = np.zeros_like(nodes)
    for a in range(max_depth + 1):
        for n in range(1, max_nodes + 1):
            x, w = roots_jacobi(n, a, 0)  # on [-1, 1], weight (1 - x)^a
            nodes[a, n, :n] = (x + 1.0) / 2.0
            weights[a, n, :n] = w * 2.0 ** (-a - 1)
    return nodes, weights


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _leaf(acc: Floats, value: Floats, node: int, m1: int, m0: int, z1: Floats, c1: Ints,
          z0: float, z_all: float, jt: Floats, jw: Floats, suf: Floats, s: Floats) -> float:
    """Add the Shapley values of one leaf's followed features to ``acc`` (columns x classes) and
    return the value (per unit of the leaf's v) each of its other features gets: ``c1``/``z1`` are
    the m1 path features x follows and their merged z, m0 the number it does not follow, ``z0``
    the product of those's z and ``z_all`` of all. No array views are made here (each costs
    reference counting, per leaf)."""
    if m1 + m0 == 0:
        return 0.0
    # Three classes (the engine checks): the leaf's values in scalars.
    v0 = value[node, 0]
    v1 = value[node, 1]
    v2 = value[node, 2]
    # What the leaf's values add up to (per unit of v): prod o - prod z.
    total = (1.0 if m0 == 0 else 0.0) - z_all
    followed = 0.0
    if m1 > 0:
        # F(t) = z0 (1 - t)^m0 * prod_followed g_j(t): the (1 - t)^m0 is the rule's weight, so
        # F / g_i (degree m1 - 1 besides it) takes ceil(m1 / 2) nodes.
        n = (m1 + 1) // 2
        for k in range(m1):
            s[k] = 0.0
        for b in range(0, n, 4):  # LANES nodes at a time, in four scalars
            t0 = jt[m0, n, b]
            t1 = jt[m0, n, b + 1]
            t2 = jt[m0, n, b + 2]
            t3 = jt[m0, n, b + 3]
            # prod_{j != k} g_j = (prod_{j < k}) * (prod_{j > k}): suffix products stored, prefix
            # ones running; no division (the slowest operation here).
            q0 = q1 = q2 = q3 = 1.0
            for k in range(m1 - 1, -1, -1):
                suf[k, 0] = q0
                suf[k, 1] = q1
                suf[k, 2] = q2
                suf[k, 3] = q3
                z = z1[k]
                u = 1.0 - z
                q0 *= z + u * t0
                q1 *= z + u * t1
                q2 *= z + u * t2
                q3 *= z + u * t3
            p0 = jw[m0, n, b] * z0
            p1 = jw[m0, n, b + 1] * z0
            p2 = jw[m0, n, b + 2] * z0
            p3 = jw[m0, n, b + 3] * z0
            for k in range(m1):
                s[k] += p0 * suf[k, 0] + p1 * suf[k, 1] + p2 * suf[k, 2] + p3 * suf[k, 3]
                z = z1[k]
                u = 1.0 - z
                p0 *= z + u * t0
                p1 *= z + u * t1
                p2 *= z + u * t2
                p3 *= z + u * t3
        for k in range(m1):
            w = s[k] * (1.0 - z1[k])
            followed += w
            f = c1[k]
            acc[f, 0] += w * v0
            acc[f, 1] += w * v1
            acc[f, 2] += w * v2
    if m0 == 0:
        return 0.0
    # Every feature x does not follow gets the same value, -v * integral F(t) / (1 - t): the
    # rest of the total, shared. The walk adds it to them (see ``_tree``).
    return (total - followed) / m0


@njit(cache=True, nogil=True, error_model="numpy")
def _tree(x: Floats, root: int, left: Ints, right: Ints, feature: Ints, threshold: Floats,
          cover: Floats, value: Floats, max_depth: int, jt: Floats, jw: Floats, acc: Floats) -> None:
    """One tree's Shapley values for row x, added to ``acc`` (columns x classes).

    The path's unique features are kept in two lists, those x follows (``feat1``/``z1``, m1 long)
    and those it does not (``feat0``/``zz0``), with ``list_of``/``pos_of`` finding a column in
    them, so a leaf reads them as they are. Each edge taken is logged per depth and undone when
    the walk leaves its subtree: every node costs O(1) besides its leaf's work."""
    width = max_depth + 2
    feat1 = np.empty(width, dtype=np.int64)
    z1 = np.empty(width)
    feat0 = np.empty(width, dtype=np.int64)
    zz0 = np.empty(width)
    list_of = np.full(x.shape[0], -1, dtype=np.int64)  # -1: not on the path, 1: followed, 0: not
    pos_of = np.zeros(x.shape[0], dtype=np.int64)
    # The edge into depth d: what it did (see below), the slot and the z it changed.
    kind = np.empty(width, dtype=np.int64)
    undo_pos = np.empty(width, dtype=np.int64)
    undo_z = np.empty(width)
    prod0 = np.ones(width + 1)  # product of the not-followed features' z, per depth
    # Every not-followed feature of a leaf gets the same value: one running sum r of them over the
    # leaves walked, and each not-followed slot adds what r gained while it was filled.
    r0 = r1 = r2 = 0.0
    r_at = np.empty((width, 3))
    suf = np.empty((width, 4))
    s = np.empty(width)
    m1 = 0
    m0 = 0
    applied = 0  # edges in effect: the depth of the node last visited
    root_cover = cover[root]
    # (node, depth, parent, went left); node ids are global (offset by the tree's root)
    stack = np.empty((2 * width + 2, 4), dtype=np.int64)
    stack[0, 0] = root
    stack[0, 1] = 0
    stack[0, 2] = -1
    stack[0, 3] = 0
    top = 1
    while top > 0:
        top -= 1
        node = stack[top, 0]
        d = stack[top, 1]
        parent = stack[top, 2]
        while applied >= d and applied > 0:  # leave the subtrees finished since
            k = kind[applied]
            if k == 0:  # appended to the followed list
                m1 -= 1
                list_of[feat1[m1]] = -1
            elif k == 1:  # appended to the other list
                m0 -= 1
                j = feat0[m0]
                acc[j, 0] += r0 - r_at[m0, 0]
                acc[j, 1] += r1 - r_at[m0, 1]
                acc[j, 2] += r2 - r_at[m0, 2]
                list_of[j] = -1
            elif k == 2:
                z1[undo_pos[applied]] = undo_z[applied]
            elif k == 3:
                zz0[undo_pos[applied]] = undo_z[applied]
            else:  # moved from the followed list (slot p, refilled by its last) to the other
                m0 -= 1
                j = feat0[m0]
                acc[j, 0] += r0 - r_at[m0, 0]
                acc[j, 1] += r1 - r_at[m0, 1]
                acc[j, 2] += r2 - r_at[m0, 2]
                p = undo_pos[applied]
                if p != m1:
                    moved = feat1[p]
                    feat1[m1] = moved
                    z1[m1] = z1[p]
                    pos_of[moved] = m1
                feat1[p] = j
                z1[p] = undo_z[applied]
                list_of[j] = 1
                pos_of[j] = p
                m1 += 1
            applied -= 1
        if parent >= 0:
            j = feature[parent]
            xv = x[j]
            follows = xv <= threshold[parent] if stack[top, 3] == 1 else not (xv <= threshold[parent])
            ratio = cover[node] / cover[parent]
            p0 = prod0[d - 1]
            where = list_of[j]
            if where < 0:
                if follows:
                    kind[d] = 0
                    feat1[m1] = j
                    z1[m1] = ratio
                    list_of[j] = 1
                    pos_of[j] = m1
                    m1 += 1
                else:
                    kind[d] = 1
                    r_at[m0, 0] = r0
                    r_at[m0, 1] = r1
                    r_at[m0, 2] = r2
                    feat0[m0] = j
                    zz0[m0] = ratio
                    list_of[j] = 0
                    pos_of[j] = m0
                    m0 += 1
                    p0 *= ratio
            elif where == 0:
                p = pos_of[j]
                kind[d] = 3
                undo_pos[d] = p
                undo_z[d] = zz0[p]
                zz0[p] *= ratio
                p0 *= ratio
            else:
                p = pos_of[j]
                old = z1[p]
                undo_pos[d] = p
                undo_z[d] = old
                if follows:
                    kind[d] = 2
                    z1[p] = old * ratio
                else:
                    kind[d] = 4
                    last = m1 - 1
                    if p != last:
                        moved = feat1[last]
                        feat1[p] = moved
                        z1[p] = z1[last]
                        pos_of[moved] = p
                    m1 = last
                    r_at[m0, 0] = r0
                    r_at[m0, 1] = r1
                    r_at[m0, 2] = r2
                    feat0[m0] = j
                    zz0[m0] = old * ratio
                    list_of[j] = 0
                    pos_of[j] = m0
                    m0 += 1
                    p0 *= old * ratio
            prod0[d] = p0
            applied = d
        if left[node] < 0:
            # z of all the path's features: the leaf's share of the root's cover (telescoping)
            share = _leaf(acc, value, node, m1, m0, z1, feat1, prod0[d], cover[node] / root_cover,
                          jt, jw, suf, s)
            r0 += share * value[node, 0]
            r1 += share * value[node, 1]
            r2 += share * value[node, 2]
            continue
        stack[top, 0] = root + right[node]
        stack[top, 1] = d + 1
        stack[top, 2] = node
        stack[top, 3] = 0
        stack[top + 1, 0] = root + left[node]
        stack[top + 1, 1] = d + 1
        stack[top + 1, 2] = node
        stack[top + 1, 3] = 1
        top += 2
    for slot in range(m0):  # the slots still filled when the walk ends
        j = feat0[slot]
        acc[j, 0] += r0 - r_at[slot, 0]
        acc[j, 1] += r1 - r_at[slot, 1]
        acc[j, 2] += r2 - r_at[slot, 2]


@njit(cache=True, nogil=True, error_model="numpy")
def explain_trees(x: Floats, roots: Ints, left: Ints, right: Ints, feature: Ints, threshold: Floats,
                  cover: Floats, value: Floats, max_depth: int, jt: Floats, jw: Floats, first: int,
                  last: int, per_tree: Floats) -> None:
    """Shapley values of trees ``first..last-1`` for rows ``x`` (float32 values widened to
    float64) into ``per_tree[row, tree]`` (columns x classes). ``left``/``right`` are tree-local
    child ids (-1 at a leaf); ``value`` holds each node's class values already divided by the
    number of trees. Releases the GIL: threads run disjoint tree ranges side by side."""
    for r in range(x.shape[0]):
        for t in range(first, last):
            _tree(x[r], roots[t], left, right, feature, threshold, cover, value, max_depth, jt, jw,
                  per_tree[r, t])


@njit(cache=True, nogil=True)
def forest_proba(x: Floats, roots: Ints, left: Ints, right: Ints, feature: Ints, threshold: Floats,
                 value: Floats) -> Floats:
    """The forest's probabilities for rows ``x``: each tree's leaf reached by plain descent
    (``x <= threshold`` goes left, as scikit-learn), summed in tree order. What the Shapley values
    must add up to; a walk of its own, not the explanation's."""
    out = np.zeros((x.shape[0], value.shape[1]))
    for r in range(x.shape[0]):
        for t in range(roots.shape[0]):
            root = roots[t]
            node = root
            while left[node] >= 0:
                node = root + (left[node] if x[r, feature[node]] <= threshold[node] else right[node])
            out[r] += value[node]
    return out
