"""The numerics behind :mod:`tdcore._tensor`: scale pulled out, work in blocks, exact residuals.

* scale: a SymCP is held as ``2**E * sum_i c_i f_i^{(x) l}`` (:class:`_CP`), with
  factors whose column scales are safe used as they are and the others made unit
  (the weights carrying their norms), so that inner products, norms and errors
  are right for weights and factors anywhere in the floating range;
* memory: Gram matrices are formed in blocks of at most ``chunk_bytes``
  (nothing of size ``m x m'``), or, where ``d^l`` is small, the dense tensor is
  accumulated in blocks (the cheaper route is chosen);
* precision: where the Gram expansion would be dominated by its own rounding,
  the residual is evaluated entrywise in an orthonormal basis of the span of the
  components (equal components cancel exactly).
"""

from __future__ import annotations

import math

import numpy as np

from ._backend import on_common, to_numpy, xp_of
from ._validate import check_int

__all__: list[str] = []


def _contract_dense(T, U, *, block_bytes=64 * 2**20):
    """``T(., u_j, ..., u_j)`` for each column of ``U`` (shape (d, n)), O(n d^l) work.

    Columns are processed in blocks so that the largest temporary,
    ``d^(l-1) x block``, stays under ``block_bytes``.
    """
    xp, T, U = on_common(T, U)
    d, l = T.shape[0], T.ndim
    n = U.shape[1]
    out = xp.empty((d, n), dtype=np.result_type(T.dtype, U.dtype))
    block = max(1, int(block_bytes // (8 * d ** (l - 1))))
    flat = T.reshape(d ** (l - 1), d)
    for s in range(0, n, block):
        Ub = U[:, s:s + block]
        Y = flat @ Ub  # (d^(l-1), b): last mode contracted
        for k in range(l - 2):
            Y = Y.reshape(d ** (l - 2 - k), d, Ub.shape[1])
            Y = xp.einsum("adb,db->ab", Y, Ub)
        out[:, s:s + block] = Y
    return out


# -- scale-robust, chunked arithmetic --------------------------------------------------
#
# Every quantity is computed with the scale pulled out.  A SymCP becomes
# ``2**E * sum_i c_i f_i^{(x) l}`` with unit columns ``f_i`` (each column first
# scaled by an exact power of two, then divided by its norm) and the weights
# ``c_i = w_i ||u_i||^l / 2**E`` (``|c_i| <= d^{l/2}``; components below ``2**-1074``
# times the largest one vanish, which is below rounding).  A dense array becomes
# ``2**E * A`` with ``max |A|`` in [0.5, 1).  Gram entries of unit columns are at
# most 1 in absolute value, so no power ``(f_i . f_j)^l`` and no sum over the
# weights can overflow or underflow whatever the input's scale; exponents are
# added as integers and the result is converted to a float once, at the end.
#
# Memory: products of many components are formed in blocks.  Besides the inputs
# (and their unit-column copies, the size of the factors), no temporary of
# ``inner``/``norm``/``rel_error`` is larger than ``chunk_bytes`` (default
# ``DEFAULT_CHUNK_BYTES`` = 64 MiB): Gram blocks ``f_a^T f_b`` and their powers for
# two SymCP (O(n n' d) work), or, where it is cheaper, the dense tensor
# accumulated in blocks of components (O((n + n') d^l) work, chosen only when the
# ``d^l`` array fits in half of ``chunk_bytes``).  A dense operand costs at most one
# further ``d^l`` array (its scaled copy or the residual of ``rel_error``).

#: Bound (bytes) on the temporaries of :func:`inner`, :func:`norm` and :func:`rel_error` (64 MiB).
DEFAULT_CHUNK_BYTES = 2**26

#: The Gram expansion of ``||a - b||^2`` is replaced by the precise evaluation when its
#: rounding error could exceed this fraction of the value (see :func:`rel_error`).
_PRECISE_RTOL = 1e-8


class _CP:
    """A SymCP with its scale pulled out: ``2**E * sum_i c_i f_i^{(x) order}``.

    ``unit``: the ``f_i`` are unit vectors; otherwise they are the factors as given,
    whose column scales are within ``2**+-(400 // order)`` (so that Gram powers
    of them neither overflow nor underflow) and only the weights were rescaled.
    ``E`` is None for the zero tensor (then ``c`` is empty).
    """

    __slots__ = ("F", "c", "E", "order", "xp", "unit")

    def __init__(self, F, c, E, order, xp, unit):
        self.F, self.c, self.E, self.order, self.xp, self.unit = F, c, E, order, xp, unit

    def scaled_to(self, E):
        """The weights expressed at scale ``2**E`` (exact up to underflow of negligible parts)."""
        if self.E is None:
            return self.c
        return self.xp.ldexp(self.c, int(self.E - E))

    def mass(self):
        """``sum_i |c_i| ||f_i||^l``: bounds every term of the Gram expansion."""
        xp = self.xp
        if self.E is None:
            return 0.0
        if self.unit:
            return float(xp.sum(xp.abs(self.c)))
        n2 = xp.einsum("ij,ij->j", self.F, self.F)
        return float(xp.sum(xp.abs(self.c) * n2 ** (self.order / 2)))


def _colmax(F):
    xp = xp_of(F)
    return xp.maximum(xp.max(F, axis=0), -xp.min(F, axis=0))  # no |F| temporary


def _cp_form(T, unit=False):
    """The :class:`_CP` form of a SymCP: raw factors when their scales are safe (no copy), else unit ones."""
    xp = xp_of(T.factors)
    F, w, l = T.factors, T.weights, T.order
    colmax = _colmax(F)
    keep = (colmax > 0) & (w != 0)
    if not bool(xp.all(keep)):
        F, w, colmax = F[:, keep], w[keep], colmax[keep]
    if F.shape[1] == 0:
        return _CP(F, w, None, l, xp, True)
    _, e = xp.frexp(colmax)
    if not unit and int(xp.max(xp.abs(e))) <= 400 // l:
        _, ew = xp.frexp(w)
        E = int(xp.max(ew))
        return _CP(F, xp.ldexp(w, -E), E, l, xp, False)
    return _unit_form(F, w, 0, l, xp, e)


def _unit_form(F, w, E0, l, xp, e=None):
    """``2**E0 sum_i w_i F_i^l`` with unit columns (every column non-zero, every weight non-zero)."""
    if e is None:
        _, e = xp.frexp(_colmax(F))
    # exact: every column's largest entry now in [0.5, 1).  The norms are reduced along
    # contiguous rows of F^T, so a column's result does not depend on its position
    # (equal columns stay bitwise equal: rel_error cancels them exactly)
    Ft = xp.ascontiguousarray(xp.ldexp(F, -e).T)
    nrm = xp.sqrt(xp.sum(Ft * Ft, axis=1))
    F = (Ft / nrm[:, None]).T
    mw, ew = xp.frexp(w)
    ex = ew.astype(np.int64) + l * e.astype(np.int64)
    E = int(xp.max(ex))
    c = xp.ldexp(mw * nrm**l, ex - E)
    return _CP(F, c, E + E0, l, xp, True)


def _as_unit(p):
    """``p`` with unit columns (a copy of the factors; used by the precise path)."""
    if p.unit or p.E is None:
        return p
    live = p.c != 0
    F, c = (p.F, p.c) if bool(p.xp.all(live)) else (p.F[:, live], p.c[live])
    if F.shape[1] == 0:
        return _CP(F, c, None, p.order, p.xp, True)
    return _unit_form(F, c, p.E, p.order, p.xp)


def _dense_exp(T):
    """``E`` with ``max |T| = m 2**E``, m in [0.5, 1); None for the zero array."""
    xp = xp_of(T)
    mx = float(xp.max(xp.abs(T))) if T.size else 0.0
    return None if mx == 0 else math.frexp(mx)[1]


def _to_float(mant, exp):
    """``mant * 2**exp`` as a float (inf on overflow, 0 or subnormal on underflow)."""
    mant = float(mant)
    if mant == 0 or not math.isfinite(mant):
        return mant
    m, e = math.frexp(mant)
    e += int(exp)
    if e > 1024:
        return math.copysign(math.inf, m)
    return math.ldexp(m, max(e, -1100))


def _sqrt_scaled(mant, exp):
    """``sqrt(mant * 2**exp)`` for ``mant >= 0``."""
    mant = max(float(mant), 0.0)
    if exp % 2:
        mant, exp = 2.0 * mant, exp - 1
    return _to_float(math.sqrt(mant), exp // 2)


def _chunk(chunk_bytes):
    if chunk_bytes is None:
        return DEFAULT_CHUNK_BYTES
    return check_int("chunk_bytes", chunk_bytes, minimum=1024)


def _powered(G, l):
    """``G ** l`` elementwise (G is a fresh block; one more block-sized temporary)."""
    if l == 1:
        return G
    P = G * G
    for _ in range(l - 2):
        P *= G
    return P


def _gram_sum(Fa, ca, Fb, cb, l, chunk_bytes, same=False):
    """``sum_ij ca_i cb_j (fa_i . fb_j)^l`` from blocks of the Gram matrix.

    A block and its power hold at most ``chunk_bytes`` together; with ``same``
    (``Fb is Fa``, ``cb is ca``) only blocks on or above the diagonal are formed.
    """
    na, nb = Fa.shape[1], Fb.shape[1]
    if na == 0 or nb == 0:
        return 0.0
    elems = max(1, chunk_bytes // (2 * Fa.dtype.itemsize))
    cbk = min(nb, elems)
    rb = max(1, elems // cbk)
    total = 0.0
    for s in range(0, na, rb):
        e = min(na, s + rb)
        At = Fa[:, s:e].T
        cs = ca[s:e]
        for t in range(s if same else 0, nb, cbk):
            u = min(nb, t + cbk)
            P = _powered(At @ Fb[:, t:u], l)
            if same and t < e:  # this piece holds (part of) the diagonal block [s, e) x [s, e)
                k = min(u, e) - t
                total += float(cs @ (P[:, :k] @ cb[t:t + k]))
                if k < u - t:
                    total += 2.0 * float(cs @ (P[:, k:] @ cb[t + k:u]))
            else:
                total += (2.0 if same else 1.0) * float(cs @ (P @ cb[t:u]))
    return total


def _dense_flat(F, c, l, chunk_bytes):
    """``sum_i c_i f_i^{(x) l}`` as a ``(d^(l-1), d)`` array, accumulated over blocks of columns.

    The Khatri--Rao block ``d^(l-1) x b`` and its predecessor stay within ``chunk_bytes``.
    """
    xp = xp_of(F)
    d, n = F.shape
    out = xp.zeros((d ** (l - 1), d), dtype=F.dtype)
    b = max(1, chunk_bytes // (2 * F.dtype.itemsize * d ** (l - 1)))
    for s in range(0, n, b):
        Fb = F[:, s:s + b]
        K = Fb
        for _ in range(l - 2):
            K = (K[:, None, :] * Fb[None, :, :]).reshape(-1, Fb.shape[1])
        out += K @ (c[s:s + b, None] * Fb.T)
    return out


def _dense_product(F, w, l):
    """``sum_i w_i f_i^{(x) l}`` as a ``(d^(l-1), d)`` array, written by one matrix product.

    The Khatri--Rao block ``K`` (``d^(l-1) x n``, columns ``f_i^{(x)(l-1)}``) times
    ``diag(w) F^T`` goes straight into the output: no zero fill, no accumulation,
    no scaling pass.  For factors and weights in a safe range (see
    :meth:`tdcore.SymCP.to_dense`).
    """
    xp = xp_of(F)
    d, n = F.shape
    K = F
    for _ in range(l - 2):
        K = (K[:, None, :] * F[None, :, :]).reshape(-1, n)
    out = xp.empty((d ** (l - 1), d), dtype=F.dtype)
    xp.matmul(K, w[:, None] * F.T, out=out)
    return out


def _dense_fits(d, l, itemsize, chunk_bytes):
    return itemsize * d**l <= chunk_bytes // 2


def _flat_blocks(T, chunk_bytes):
    flat = T.reshape(-1)
    step = max(1, chunk_bytes // (2 * T.dtype.itemsize))
    for s in range(0, flat.shape[0], step):
        yield flat[s:s + step]


def _dense_sumsq(T, E, chunk_bytes):
    """``sum T^2 / 4**E`` in blocks."""
    xp = xp_of(T)
    total = 0.0
    for blk in _flat_blocks(T, chunk_bytes):
        x = xp.ldexp(blk, -E)
        total += float(xp.vdot(x, x))
    return total


def _cp_sumsq(p, chunk_bytes, E=None, check=True, budget=None):
    """``||T||^2 / 4**E`` of a :class:`_CP` (``E`` defaults to its own scale), by the cheaper path.

    With ``check``, a value within ``1/_PRECISE_RTOL`` of the rounding bound of its
    terms (components that nearly cancel) is recomputed by the precise evaluation.
    """
    if p.E is None:
        return 0.0
    E = p.E if E is None else E
    c = p.scaled_to(E)
    d, n = p.F.shape
    l = p.order
    if _dense_fits(d, l, p.F.dtype.itemsize, chunk_bytes) and n * d**l < n * n * (d + l) // 2:
        D = _dense_flat(p.F, c, l, chunk_bytes)
        s2 = float(p.xp.vdot(D.reshape(-1), D.reshape(-1)))
    else:
        s2 = _gram_sum(p.F, c, p.F, c, l, chunk_bytes, same=True)
    if check and s2 <= _gram_noise(l, d, p.F.dtype, _to_float(p.mass(), p.E - E)) / _PRECISE_RTOL:
        q = _as_unit(p)
        if q.E is None:
            return 0.0
        sp = _precise_sumsq(to_numpy(q.F), to_numpy(q.scaled_to(E)), l, chunk_bytes,
                            DEFAULT_PRECISE_BUDGET if budget is None else budget)
        if sp is not None:
            s2 = sp
    return max(s2, 0.0)


def _cp_inner(pa, pb, chunk_bytes):
    """``(mantissa, exponent)`` of ``<a, b>`` for two :class:`_CP`."""
    if pa.E is None or pb.E is None:
        return 0.0, 0
    d, l = pa.F.shape[0], pa.order
    na, nb = pa.F.shape[1], pb.F.shape[1]
    if _dense_fits(d, l, pa.F.dtype.itemsize, chunk_bytes) and (na + nb) * d**l < na * nb * (d + l):
        small, big = (pa, pb) if na <= nb else (pb, pa)
        D = _dense_flat(big.F, big.c, l, chunk_bytes).reshape((d,) * l)
        R = _contract_dense(D, small.F, block_bytes=chunk_bytes // 2)
        xp = pa.xp
        return float(xp.sum(small.c * xp.sum(small.F * R, axis=0))), pa.E + pb.E
    return _gram_sum(pa.F, pa.c, pb.F, pb.c, l, chunk_bytes), pa.E + pb.E


def _cp_dense_inner(p, T, chunk_bytes):
    """``(mantissa, exponent)`` of ``<cp, T>`` for a :class:`_CP` and a dense array."""
    Et = _dense_exp(T)
    if p.E is None or Et is None:
        return 0.0, 0
    xp = p.xp
    if abs(Et) > 200:  # entries near the ends of the range: contract a scaled copy
        R = _contract_dense(xp.ldexp(T, -Et), p.F, block_bytes=chunk_bytes // 2)
        shift = 0
    else:  # |T| <= 2**200 and its significant entries >= 2**-201: the contraction is safe as it is
        R = _contract_dense(T, p.F, block_bytes=chunk_bytes // 2)
        shift = Et
    mant = float(xp.sum(p.c * xp.sum(p.F * R, axis=0)))
    return (math.ldexp(mant, -shift) if shift else mant), p.E + Et


def _dense_inner(A, B, chunk_bytes):
    xp = xp_of(A)
    Ea, Eb = _dense_exp(A), _dense_exp(B)
    if Ea is None or Eb is None:
        return 0.0, 0
    total = 0.0
    for x, y in zip(_flat_blocks(A, chunk_bytes), _flat_blocks(B, chunk_bytes)):
        total += float(xp.vdot(xp.ldexp(x, -Ea), xp.ldexp(y, -Eb)))
    return total, Ea + Eb


def _canonical_merge(F, c, l):
    """Columns with a positive first non-zero entry; bitwise-equal columns merged (weights summed)."""
    F = np.array(F, dtype=np.float64, copy=True)
    c = np.array(c, dtype=np.float64, copy=True)
    first = np.argmax(F != 0, axis=0)
    sg = np.sign(F[first, np.arange(F.shape[1])])
    F *= sg
    if l % 2:
        c *= sg
    Fu, inv = np.unique(F.T, axis=0, return_inverse=True)
    cu = np.bincount(inv.reshape(-1), weights=c, minlength=Fu.shape[0])
    keep = cu != 0
    return Fu[keep].T, cu[keep]


def _precise_diff_sumsq(pa, pb, E, chunk_bytes, budget):
    """``||a - b||^2 / 4**E`` without the Gram expansion's cancellation, or None if too costly."""
    pa, pb = _as_unit(pa), _as_unit(pb)
    parts_F = [to_numpy(p.F) for p in (pa, pb) if p.E is not None]
    parts_c = [to_numpy(pa.scaled_to(E))] if pa.E is not None else []
    if pb.E is not None:
        parts_c.append(-to_numpy(pb.scaled_to(E)))
    if not parts_F:
        return 0.0
    return _precise_sumsq(np.concatenate(parts_F, axis=1), np.concatenate(parts_c), pa.order, chunk_bytes,
                          budget)


def _precise_sumsq(F, c, l, chunk_bytes, budget):
    """``||sum_i c_i f_i^{(x) l}||^2`` summed entrywise (unit columns ``F``), or None if too costly.

    Exactly equal components (after the sign convention) cancel exactly; the rest
    is written in an orthonormal basis of the span of the remaining columns
    (thin QR when ``d`` exceeds their number) and the squares of the ``k^l`` core
    entries are summed, ``k <= min(d, n)``: relative precision ~ eps.
    """
    F, c = _canonical_merge(F, c, l)
    n = F.shape[1]
    if n == 0:
        return 0.0
    d = F.shape[0]
    k = min(d, n)
    if k**l * n > budget or not _dense_fits(k, l, 8, chunk_bytes):
        return None
    Z = F if d <= n else np.linalg.qr(F, mode="r")
    D = _dense_flat(Z, c, l, chunk_bytes)
    return float(np.vdot(D.reshape(-1), D.reshape(-1)))


def _gram_noise(l, d, dtype, mass):
    """Bound on the rounding error of a Gram expansion whose terms total ``mass^2`` in absolute value."""
    return (l * math.sqrt(d) + 4.0) * float(np.finfo(dtype).eps) * mass * mass


#: Cost bound (about the number of flops, ``k^l (n + n')``) of the automatic precise path.
DEFAULT_PRECISE_BUDGET = 2 * 10**8


def _cp_rel_error(pa, pb, chunk_bytes, precise, budget):
    """Relative error of two :class:`_CP`; ``precise``: None (automatic), True or False."""
    l, d = pb.order, pb.F.shape[0]
    nb2 = _cp_sumsq(pb, chunk_bytes)
    if pa.E is None:
        return 1.0
    E = max(pa.E, pb.E)
    ca, cb = pa.scaled_to(E), pb.scaled_to(E)
    na, nb = pa.F.shape[1], pb.F.shape[1]
    xp = pa.xp
    d2 = _precise_diff_sumsq(pa, pb, E, chunk_bytes, budget) if precise is True else None
    if d2 is None:
        if _dense_fits(d, l, pa.F.dtype.itemsize, chunk_bytes) and (na + nb) * d**l < (na + nb) ** 2 * (d + l) // 2:
            # accumulate the residual densely: no cancellation beyond the rounding of its entries
            D = _dense_flat(xp.concatenate([pa.F, pb.F], axis=1), xp.concatenate([ca, -cb]), l, chunk_bytes)
            d2 = float(xp.vdot(D.reshape(-1), D.reshape(-1)))
        else:
            d2 = (_gram_sum(pa.F, ca, pa.F, ca, l, chunk_bytes, same=True)
                  - 2.0 * _gram_sum(pa.F, ca, pb.F, cb, l, chunk_bytes)
                  + _gram_sum(pb.F, cb, pb.F, cb, l, chunk_bytes, same=True))
        # rounding: every |c_i c_j (f_i . f_j)^l| <= |c_i| |c_j| ||f_i||^l ||f_j||^l, so the error of
        # the expansion (and of the dense residual's entries) is at most about
        # (l sqrt(d) + 4) eps (sum_i |c_i| ||f_i||^l)^2; a value within 1e8 of that is not trusted
        if precise is None:
            s = _to_float(pa.mass(), pa.E - E) + _to_float(pb.mass(), pb.E - E)
            if d2 <= _gram_noise(l, d, pa.F.dtype, s) / _PRECISE_RTOL:
                dp = _precise_diff_sumsq(pa, pb, E, chunk_bytes, budget)
                if dp is not None:
                    d2 = dp
    ratio = max(d2, 0.0) / nb2
    return _to_float(math.sqrt(ratio), E - pb.E)


def _cp_dense_rel_error(p, T, model_is_cp, chunk_bytes):
    """Relative error between a :class:`_CP` and a dense array, from the dense residual."""
    xp = p.xp
    Et = _dense_exp(T)
    Ep = p.E
    if Et is None and Ep is None:
        E = 0
    else:
        E = max(x for x in (Et, Ep) if x is not None)
    d, l = T.shape[0], T.ndim
    R = (_dense_flat(p.F, p.scaled_to(E), l, chunk_bytes).reshape(-1) if Ep is not None
         else xp.zeros(d**l, dtype=T.dtype))
    if Et is not None:
        step = max(1, chunk_bytes // (2 * T.dtype.itemsize))
        flat = T.reshape(-1)
        for s in range(0, flat.shape[0], step):
            R[s:s + step] -= xp.ldexp(flat[s:s + step], -E)
    d2 = float(xp.vdot(R, R))
    if model_is_cp:
        if Et is None:
            raise ValueError("target has zero norm; the relative error is undefined")
        return _to_float(math.sqrt(d2 / _dense_sumsq(T, Et, chunk_bytes)), E - Et)
    if Ep is None:
        raise ValueError("target has zero norm; the relative error is undefined")
    return _to_float(math.sqrt(d2 / _cp_sumsq(p, chunk_bytes)), E - Ep)
