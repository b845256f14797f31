r"""Train several models at once, as one block-diagonal network: seeds at the cost of one run.

The book measures every claim about training over seeds (at least five). A small recurrent
network on a CPU costs mostly per-step overhead, not arithmetic, so ``n`` members of hidden size
``H`` run as one network of hidden size ``nH`` at a fraction of the cost of ``n`` runs (measured
side by side, one thread: 5 tanh members of H = 16 cost 1.6x one member, 10 members 2.5x;
adding problem, T = 30, 300 steps). The dense products grow as ``n²``, so the gain shrinks for
many or large members. For members ``k = 1..n`` with the same architecture (one layer, input
``I``, hidden ``H``, output ``O``):

.. math::
    W_{hh} = \mathrm{blockdiag}\big(W_{hh}^{(1)}, \dots, W_{hh}^{(n)}\big), \qquad
    W_{ih} = \begin{pmatrix} W_{ih}^{(1)} \\ \vdots \\ W_{ih}^{(n)} \end{pmatrix}, \qquad
    W_{out} = \mathrm{blockdiag}\big(W_{out}^{(1)}, \dots, W_{out}^{(n)}\big),

gate block by gate block for an LSTM (i, f, g, o) or GRU (r, z, n), biases stacked. Every member
reads the same input ``x`` (B, T, I); member k's state is ``h_t[:, (k-1)H:kH]`` and evolves
exactly as the member alone. The loss is the sum of the members' losses, so each member's
gradient is its own; gradient hooks zero the off-block entries, so an elementwise optimizer
(Adam, AdamW, SGD, RMSprop) leaves them at zero. :func:`fit_members` therefore returns, to
rounding, the histories that ``n`` separate :func:`rnnlab.train.fit` calls with the same
``seed`` would (tests/test_ensemble.py checks it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rnnlab.checks import check_int, check_type
from rnnlab.clipping import clip_coefficient
from rnnlab.history import History
from rnnlab.layout import GATES
from rnnlab.models import SequenceModel
from rnnlab.tasks import Task
from rnnlab.train import eval_generator, fit

__all__ = ["Ensemble", "fit_members"]


def _signature(model: SequenceModel) -> tuple:
    core = model.core
    return (type(core), core.mode, core.input_size, core.hidden_size, core.bias,
            model.readout.out_features, model.many_to_many, model.unroll,
            core.weight_hh_l0.dtype, core.weight_hh_l0.device)


def _check_members(models) -> list[SequenceModel]:
    if isinstance(models, nn.Module) or not isinstance(models, Sequence):
        raise TypeError(f"models: expected a non-empty sequence of SequenceModel, "
                        f"got {type(models).__name__}")
    if not models:
        raise ValueError("models: expected a non-empty sequence of SequenceModel, got an "
                         "empty one")
    for i, model in enumerate(models):
        check_type(f"models[{i}]", model, SequenceModel, "an rnnlab.models.SequenceModel")
        core = model.core
        if (core.num_layers != 1 or core.bidirectional or getattr(core, "proj_size", 0)
                or core.mode not in GATES):
            raise ValueError(f"models[{i}]: expected a one-layer unidirectional RNN, LSTM or GRU "
                             f"core without proj_size, got {core!r}")
    first = _signature(models[0])
    for i, model in enumerate(models[1:], start=1):
        if _signature(model) != first:
            raise ValueError(f"models[{i}]: expected the architecture, dtype and device of "
                             f"models[0] {first}, got {_signature(model)}")
    return list(models)


class Ensemble(nn.Module):
    """``n`` :class:`~rnnlab.train.SequenceModel` members run as one block-diagonal network.

    ``forward(input (B, T, I))`` returns (B, n, O), or (B, T, n, O) for many-to-many members:
    ``[:, k]`` is what ``members[k](input)`` returns. The ensemble holds its own copy of the
    weights; :meth:`copy_to_` writes them back into the members.
    """

    def __init__(self, models: Sequence[SequenceModel]):
        super().__init__()
        models = _check_members(models)
        first = models[0]
        n, H = len(models), first.core.hidden_size
        out = first.readout.out_features
        self.n_members, self.hidden_size, self.output_size = n, H, out
        self.gates = GATES[first.core.mode]
        self.many_to_many = first.many_to_many
        weight = first.core.weight_hh_l0
        extra = {"nonlinearity": first.core.nonlinearity} if self.gates == 1 else {}
        core = type(first.core)(first.core.input_size, n * H, bias=first.core.bias,
                                batch_first=True, **extra)
        self.net = SequenceModel(core, n * out, many_to_many=first.many_to_many,
                                 unroll=first.unroll).to(weight.device, weight.dtype)
        with torch.no_grad():
            for p in self.net.parameters():
                p.zero_()
            for k, model in enumerate(models):
                for ours, theirs in self._pairs(k, model):
                    ours.copy_(theirs)
        for name in ("core.weight_hh_l0", "readout.weight"):
            param = self.net.get_parameter(name)
            mask = torch.zeros_like(param)
            for k in range(n):
                for rows, cols in self._blocks(name, k):
                    mask[rows, cols] = 1
            param.register_hook(lambda grad, mask=mask: grad * mask)
        self._params = dict(self.net.named_parameters())

    def _blocks(self, name: str, k: int) -> list[tuple[slice, slice]]:
        """(rows, cols) of member k's blocks in the ensemble's parameter ``name``, one per gate
        block, in the order of :meth:`_member_blocks`."""
        n, H, out = self.n_members, self.hidden_size, self.output_size
        every = slice(None)
        if name.startswith("readout"):
            rows = slice(k * out, (k + 1) * out)
            return [(rows, slice(k * H, (k + 1) * H) if name.endswith("weight") else every)]
        cols = slice(k * H, (k + 1) * H) if "weight_hh" in name else every
        return [(slice(g * n * H + k * H, g * n * H + (k + 1) * H), cols)
                for g in range(self.gates)]

    def _member_blocks(self, name: str) -> list[tuple[slice, slice]]:
        """The member's own (rows, cols) matching :meth:`_blocks` (one per gate block)."""
        H, every = self.hidden_size, slice(None)
        if name.startswith("readout"):
            return [(every, every)]
        return [(slice(g * H, (g + 1) * H), every) for g in range(self.gates)]

    def _pairs(self, k: int, model: SequenceModel):
        """(ensemble view, member view) of every parameter block of member k."""
        members = dict(model.named_parameters())
        for name, param in self.net.named_parameters():
            for (rows, cols), (m_rows, m_cols) in zip(self._blocks(name, k),
                                                      self._member_blocks(name), strict=True):
                yield _index(param, rows, cols), _index(members[name], m_rows, m_cols)

    def _by_member(self, name: str, t: Tensor) -> Tensor:
        """Parameter-shaped ``t`` viewed as (G, n, rest): member k's rows are ``[:, k]`` (with
        its off-block columns, which are zero in a gradient)."""
        return t.view(1 if name.startswith("readout") else self.gates, self.n_members, -1)

    def member_grad_norms(self) -> Tensor:
        r"""``(n,)``: :math:`\lVert g^{(k)}\rVert_2`, the 2-norm of each member's gradient."""
        squares = [self._by_member(name, p.grad).pow(2).sum(dim=(0, 2))
                   for name, p in self._params.items() if p.grad is not None]
        return torch.stack(squares).sum(dim=0).sqrt()

    def clip_member_grads_(self, max_norms: Tensor) -> tuple[Tensor, Tensor]:
        r"""Norm-clip each member's gradient on its own, in place; ``max_norms`` (n,), ``inf``
        for a member not to clip. Returns the norms before clipping and which were clipped.

        :math:`g^{(k)} \leftarrow g^{(k)} \min\big(1, c_k / (\lVert g^{(k)}\rVert + 10^{-6})\big)`,
        the coefficient of :func:`rnnlab.clipping.clip_grad_norm_`, one per member.
        """
        norms = self.member_grad_norms()
        coef = clip_coefficient(max_norms, norms).view(1, -1, 1)
        for name, p in self._params.items():
            if p.grad is not None:
                self._by_member(name, p.grad).mul_(coef)
        return norms, norms > max_norms

    def forward(self, input: Tensor) -> Tensor:
        output = self.net(input)                                      # (B, [T,] n·O)
        return output.unflatten(-1, (self.n_members, self.output_size))   # (B, [T,] n, O)

    def member_losses(self, prediction: Tensor, target: Tensor, task: Task) -> Tensor:
        """``(n,)``: ``task.loss`` of each member's slice of ``prediction`` (from forward)."""
        return torch.vmap(task.loss, in_dims=(-2, None))(prediction, target)

    def copy_to_(self, models: Sequence[SequenceModel]) -> None:
        """Write each member's current weights into ``models[k]`` (in place)."""
        models = _check_members(models)
        if len(models) != self.n_members:
            raise ValueError(f"models: expected {self.n_members} models, got {len(models)}")
        with torch.no_grad():
            for k, model in enumerate(models):
                for ours, theirs in self._pairs(k, model):
                    theirs.copy_(ours)


def _index(t: Tensor, rows: slice, cols: slice) -> Tensor:
    return t[rows] if t.dim() == 1 else t[rows, cols]


def _is_norm_clip(clip) -> bool:
    return clip is None or (isinstance(clip, tuple) and len(clip) == 2 and clip[0] == "norm"
                            and isinstance(clip[1], (int, float))
                            and not isinstance(clip[1], bool) and clip[1] > 0)


def fit_members(models: Sequence[SequenceModel], task: Task, steps: int, *,
                batch_size: int = 64, optimizer: str = "adam", lr: float = 1e-3, clip=None,
                seed: int = 0, progress: bool = False, device=None,
                eval_every: int | None = None, eval_batch_size: int = 512) -> list[History]:
    r"""Train ``models`` in place as one :class:`Ensemble`; one :class:`History` per member.

    Each member sees what :func:`rnnlab.train.fit` with the same ``seed`` would show it (the
    same batches, the same held-out batch every ``eval_every`` steps and at the last step) and
    gets the same updates, so ``fit_members(models, task, steps, seed=s)[k]`` equals
    ``fit(models[k], task, steps, seed=s)`` to rounding: loss, gradient norm
    :math:`\lVert g^{(k)}\rVert_2` before clipping, clipped flags, held-out losses. The members
    differ by their initial weights only, which is what a comparison of initialisations needs.

    ``optimizer``: a name as in :func:`~rnnlab.train.fit` (all are elementwise). ``clip``:
    ``None`` or ``("norm", c)``, applied to each member's gradient on its own, or a list with one
    of these per member (members trained with and without clipping in one run). No
    ``target_loss``: members cannot stop one by one. A member whose state overflows reaches the
    others through the shared products (``0 · inf = nan``), so the whole run stops there, every
    History saying ``stopped="nonfinite"``; train the members alone (:func:`~rnnlab.train.fit`)
    to see which one diverged.
    """
    models = _check_members(models)
    check_type("task", task, Task, "an rnnlab.tasks.Task")
    check_type("optimizer", optimizer, str, "a name such as 'adam' (an elementwise optimizer)")
    clips = list(clip) if isinstance(clip, list) else [clip] * len(models)
    if len(clips) != len(models) or not all(_is_norm_clip(c) for c in clips):
        raise ValueError(f"clip: expected None or ('norm', c) with c > 0, or a list of "
                         f"{len(models)} of these (one per member), got {clip!r}")
    if eval_every is not None:
        check_int("eval_every", eval_every, minimum=1)
    if device is not None:
        for model in models:
            model.to(device)
    ensemble = Ensemble(models)
    n = ensemble.n_members
    histories = [History(baseline_loss=task.baseline_loss) for _ in range(n)]
    member_loss: list[list[float]] = []

    def loss_fn(prediction: Tensor, target: Tensor) -> Tensor:
        losses = ensemble.member_losses(prediction, target, task)            # (n,)
        member_loss.append(losses.detach().tolist())
        return losses.sum()

    params = next(ensemble.parameters())
    max_norms = torch.tensor([float(c[1]) if c else math.inf for c in clips],
                             dtype=params.dtype, device=params.device)

    def clipper(_) -> tuple[float, float, bool]:
        with torch.no_grad():
            norms, clipped = ensemble.clip_member_grads_(max_norms)
        norms, clipped = norms.tolist(), clipped.tolist()
        for c, history, norm, flag in zip(clips, histories, norms, clipped):
            history.grad_norm.append(norm)
            history.clipped.append(flag)
            history.threshold.append(float(c[1]) if c else math.nan)
        return math.sqrt(sum(v * v for v in norms)), math.nan, any(clipped)

    eval_x = eval_y = None
    if eval_every is not None:
        eval_x, eval_y = task.sample(eval_batch_size,
                                     eval_generator(seed),
                                     dtype=params.dtype, device=params.device)

    def callback(step: int, model: nn.Module, history: History) -> None:
        if eval_x is None or (step % eval_every and step != steps):
            return
        ensemble.eval()
        with torch.no_grad():
            prediction = ensemble(eval_x)                                  # (B, [T,] n, O)
            losses = ensemble.member_losses(prediction, eval_y, task).tolist()
        ensemble.train()
        for k, member_history in enumerate(histories):
            member_history.eval_step.append(step)
            member_history.eval_loss.append(losses[k])
            member_history.eval_accuracy.append(task.accuracy(prediction.select(-2, k), eval_y))

    shared = fit(ensemble, task, steps, batch_size=batch_size, optimizer=optimizer, lr=lr,
                 clip=clipper, seed=seed, progress=progress, loss_fn=loss_fn, callback=callback)
    ensemble.copy_to_(models)
    for k, history in enumerate(histories):
        history.loss = [losses[k] for losses in member_loss]
        history.time = list(shared.time)
        history.stopped = shared.stopped
    return histories

