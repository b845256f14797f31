r"""Initialisations of recurrent weights, and the spectral radius that decides their fate.

The course reads vanishing and exploding gradients off the product
:math:`\partial h_T/\partial h_t = \prod_k \mathrm{diag}(\phi'(a_k))\, W_{hh}`; the functions here
choose the :math:`W_{hh}` that enters it (and the forget bias that gates it in an LSTM).

Module-level functions act on every layer ``l`` and direction (``_l{l}`` and ``_l{l}_reverse``)
of a :class:`torch.nn.RNN`, :class:`~torch.nn.LSTM` or :class:`~torch.nn.GRU` (or a subclass such
as :class:`rnnlab.LSTM`), in place under :func:`torch.no_grad`, and return the module.

Torch's layout (:mod:`rnnlab.layout`) stacks ``G`` gate blocks by rows in ``weight_ih``
``(G·H, I_l)`` and ``weight_hh`` ``(G·H, P)``. Each gate block is one ``(H, fan_in)`` matrix and
is initialised on its own, so its ``fan_out`` is ``H``, not ``G·H`` (torch's own
:func:`torch.nn.init.xavier_normal_` applied to the whole stacked matrix would use ``G·H``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from rnnlab.checks import check_number, check_tensor
from rnnlab.layout import GATES, check_recurrent, directions, weights

__all__ = ["xavier_", "he_", "orthogonal_", "identity_", "forget_bias_",
           "set_spectral_radius_", "spectral_radius"]


# --------------------------------------------------------------------------------------------
# The walk over layers, directions and gate blocks
# --------------------------------------------------------------------------------------------

def _check_square(name: str, weight) -> None:
    check_tensor(name, weight, floating=True)
    if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
        raise ValueError(f"{name}: expected a square 2-D tensor, got shape {tuple(weight.shape)}")


def _all(module: torch.nn.RNNBase, field: str) -> Iterator[Tensor]:
    """``field`` (``weight_ih``, ``bias_hh``, …) of every layer and direction that has one."""
    for layer, direction in directions(module):
        value = getattr(weights(module, layer, direction), field)
        if value is not None:
            yield value


def _blocks(module: torch.nn.RNNBase, field: str) -> Iterator[Tensor]:
    """Every ``(H, fan_in)`` gate block (a view) of ``field`` over layers and directions."""
    for weight in _all(module, field):
        yield from weight.chunk(GATES[module.mode], dim=0)


def _normal_(module: torch.nn.RNNBase, std, generator: torch.Generator | None):
    """Fill every gate block with N(0, std(fan_in, fan_out)²) and zero the biases."""
    with torch.no_grad():
        blocks = [*_blocks(module, "weight_ih"), *_blocks(module, "weight_hh"),
                  *_all(module, "weight_hr")]
        for block in blocks:
            fan_out, fan_in = block.shape
            block.normal_(0.0, std(fan_in, fan_out), generator=generator)
        for bias in (*_all(module, "bias_ih"), *_all(module, "bias_hh")):
            bias.zero_()
    return module


# --------------------------------------------------------------------------------------------
# Variance-preserving initialisations
# --------------------------------------------------------------------------------------------

def xavier_(module: torch.nn.RNNBase, *, generator: torch.Generator | None = None):
    r"""Glorot normal initialisation of every gate block; biases zeroed.

    .. math::
        W_{\text{block}} \sim \mathcal{N}\!\left(0,\; \frac{2}{\text{fan\_in} + \text{fan\_out}}
        \right)

    per ``(H, fan_in)`` block of ``weight_ih`` and ``weight_hh`` (``fan_out = H``), and of
    ``weight_hr`` (``(P, H)``) for an LSTM with projection (Glorot & Bengio, 2010).

    Args:
        module: a ``torch.nn.RNN``/``LSTM``/``GRU`` or a subclass.
        generator: optional ``torch.Generator`` (on the parameters' device) for the draw.

    Returns:
        ``module``, changed in place.
    """
    check_recurrent("module", module)
    return _normal_(module, lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
                    generator)


def he_(module: torch.nn.RNNBase, *, generator: torch.Generator | None = None):
    r"""He (Kaiming) normal initialisation of every gate block; biases zeroed.

    .. math::
        W_{\text{block}} \sim \mathcal{N}\!\left(0,\; \frac{2}{\text{fan\_in}}\right)

    per block, as in :func:`xavier_` (He et al., 2015; derived for ReLU, so it suits
    ``nonlinearity="relu"``).

    Returns:
        ``module``, changed in place.
    """
    check_recurrent("module", module)
    return _normal_(module, lambda fan_in, fan_out: math.sqrt(2.0 / fan_in), generator)


# --------------------------------------------------------------------------------------------
# Recurrent matrices with controlled spectrum
# --------------------------------------------------------------------------------------------

def _orthogonal_blocks_(weight: Tensor, blocks: int, gain: float,
                        generator: torch.Generator | None) -> None:
    """Each of the ``blocks`` row blocks of ``weight`` ← gain·Q, Q Haar-distributed with
    orthonormal columns (tall block) or rows (wide block); one batched QR per weight."""
    rows, cols = weight.shape[0] // blocks, weight.shape[1]
    dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
    a = torch.empty(blocks, max(rows, cols), min(rows, cols), dtype=dtype, device=weight.device)
    a.normal_(0.0, 1.0, generator=generator)
    q, r = torch.linalg.qr(a)                          # (G, max, min), Qᵀ Q = I
    # signs of diag(R) made positive, so Q is Haar-distributed (Mezzadri, 2007)
    signs = torch.where(r.diagonal(dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(dtype)   # (G, min)
    q = q * signs.unsqueeze(-2)
    if rows < cols:
        q = q.transpose(-2, -1)                        # (G, rows, cols), Q Qᵀ = I
    weight.copy_(gain * q.reshape(weight.shape))


def orthogonal_(module: torch.nn.RNNBase, gain: float = 1.0, *,
                generator: torch.Generator | None = None):
    r"""Every gate block of ``weight_hh`` becomes ``gain·Q`` with Q (semi-)orthogonal.

    .. math::
        W_{hh}^{\text{block}} = g\,Q,\qquad Q^\top Q = I \quad\Rightarrow\quad
        \lVert W_{hh}^{\text{block}} x\rVert = g\,\lVert x\rVert

    so every eigenvalue of a square block has modulus ``g`` and the linear part of the
    backward product neither shrinks nor grows (Saxe et al., 2014). For LSTM (i, f, g, o) and
    GRU (r, z, n) each ``(H, H)`` gate block gets its own Q.

    With ``proj_size = P`` (LSTM) the blocks of ``weight_hh`` are ``(H, P)`` with ``P < H``, and
    ``weight_hr`` is ``(P, H)``: they cannot be orthogonal, so they are made *semi-orthogonal*
    (orthonormal columns, :math:`Q^\top Q = I_P`, for ``weight_hh`` blocks; orthonormal rows,
    :math:`Q Q^\top = I_P`, for ``weight_hr``), both times ``gain``.

    ``weight_ih`` and the biases are left as they are; compose, e.g.
    ``orthogonal_(xavier_(lstm))``, to set them too.

    Args:
        module: a ``torch.nn.RNN``/``LSTM``/``GRU`` or a subclass.
        gain: ``g >= 0``.
        generator: optional ``torch.Generator`` (on the parameters' device).

    Returns:
        ``module``, changed in place.
    """
    check_recurrent("module", module)
    gain = check_number("gain", gain, minimum=0.0)
    with torch.no_grad():
        for weight_hh in _all(module, "weight_hh"):
            _orthogonal_blocks_(weight_hh, GATES[module.mode], gain, generator)
        for weight_hr in _all(module, "weight_hr"):
            _orthogonal_blocks_(weight_hr, 1, gain, generator)
    return module


def identity_(module: torch.nn.RNNBase, scale: float = 1.0):
    r"""IRNN initialisation (Le et al., 2015): ``W_hh = scale·I``, biases 0, ``W_ih`` untouched.

    .. math::
        h_t = \mathrm{ReLU}(W_{ih} x_t + s\, h_{t-1}) \quad (s = \text{scale})

    With ``s = 1`` and zero input a ReLU network copies its state forever, and
    :math:`\partial h_T/\partial h_t = \prod_k \mathrm{diag}(\phi'(a_k))` has no ``W_hh``
    factor left to shrink or grow it. Only vanilla RNNs (``nonlinearity`` ``"relu"`` — as in the
    paper — or ``"tanh"``) have a single ``(H, H)`` recurrent block; gated cells raise.

    Returns:
        ``module``, changed in place.
    """
    check_recurrent("module", module)
    if module.mode not in ("RNN_TANH", "RNN_RELU"):
        raise ValueError(f"module: identity_ supports torch.nn.RNN (vanilla, tanh or relu) only, "
                         f"got {type(module).__name__} (mode {module.mode})")
    scale = check_number("scale", scale, minimum=0.0)
    with torch.no_grad():
        for weight_hh in _all(module, "weight_hh"):
            weight_hh.copy_(scale * torch.eye(weight_hh.shape[0], dtype=weight_hh.dtype,
                                              device=weight_hh.device))
        for bias in (*_all(module, "bias_ih"), *_all(module, "bias_hh")):
            bias.zero_()
    return module


def spectral_radius(weight: Tensor) -> float:
    r"""The spectral radius :math:`\rho(W) = \max_i |\lambda_i(W)|` of a square ``(n, n)`` matrix.

    Eigenvalues by :func:`torch.linalg.eigvals` in float64 (complex ones included, hence the
    modulus). ``ρ < 1`` is the necessary condition for gradients to vanish in a linear RNN, and
    ``ρ > 1`` for them to explode (Pascanu et al., 2013).
    """
    _check_square("weight", weight)
    dtype = torch.complex128 if weight.is_complex() else torch.float64
    return torch.linalg.eigvals(weight.detach().to(dtype)).abs().max().item()


def set_spectral_radius_(weight: Tensor, radius: float) -> Tensor:
    r"""Rescale a square matrix in place so that its spectral radius equals ``radius``.

    .. math::
        W \leftarrow \frac{r}{\rho(W)}\, W, \qquad \rho\!\left(\tfrac{r}{\rho(W)} W\right) = r

    (eigenvectors kept, every eigenvalue multiplied by the same factor). Works on a
    ``Parameter`` (under :func:`torch.no_grad`), e.g. ``model.weight_hh_l0`` of a vanilla RNN.

    Raises:
        ValueError: ``weight`` not square, ``radius < 0``, or ``ρ(W) = 0`` (a zero or exactly
            nilpotent matrix, which no scaling can give another radius).

    Returns:
        ``weight`` itself, rescaled.
    """
    _check_square("weight", weight)
    radius = check_number("radius", radius, minimum=0.0)
    if not torch.isfinite(weight).all():
        raise ValueError("weight: expected finite entries, got nan or inf")
    rho = spectral_radius(weight)
    if rho == 0.0:
        raise ValueError("weight: has spectral radius 0 (a zero or nilpotent matrix), so it "
                         "cannot be rescaled to another radius")
    with torch.no_grad():
        weight.mul_(radius / rho)
    return weight


# --------------------------------------------------------------------------------------------
# LSTM forget gate
# --------------------------------------------------------------------------------------------

def forget_bias_(lstm: torch.nn.LSTM, value: float = 1.0):
    r"""Make the *effective* forget-gate bias of every layer and direction equal ``value``.

    .. math::
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}), \qquad
        b_f^{\text{eff}} = b_{if} + b_{hf} = \text{value}

    PyTorch's LSTM has *two* bias vectors, ``bias_ih`` and ``bias_hh``, and adds both. The
    double-bias pitfall: filling the forget rows (``H:2H``) of both with 1 gives an effective
    forget bias of 2, not the 1 recommended by Gers et al. (2000) and Jozefowicz et al. (2015).
    This function sets ``b_if = value`` and ``b_hf = 0``; the i, g, o rows are left untouched.
    A forget bias of 1 starts the cell near :math:`f \approx \sigma(1) \approx 0.73`, so
    :math:`\partial c_T/\partial c_t = \prod f_k` decays slowly at the start of training.

    Args:
        lstm: a ``torch.nn.LSTM`` (or subclass) with ``bias=True``; ``proj_size`` allowed.
        value: the effective forget bias, a finite number.

    Returns:
        ``lstm``, changed in place.
    """
    check_recurrent("lstm", lstm)
    if lstm.mode != "LSTM":
        raise ValueError(f"lstm: forget_bias_ supports torch.nn.LSTM only (it has a forget gate), "
                         f"got {type(lstm).__name__} (mode {lstm.mode})")
    if not lstm.bias:
        raise ValueError("lstm: expected an LSTM with bias=True, got bias=False "
                         "(there is no forget bias to set)")
    value = check_number("value", value)
    hidden = lstm.hidden_size
    with torch.no_grad():
        for bias_ih in _all(lstm, "bias_ih"):
            bias_ih[hidden:2 * hidden].fill_(value)
        for bias_hh in _all(lstm, "bias_hh"):
            bias_hh[hidden:2 * hidden].zero_()
    return lstm
