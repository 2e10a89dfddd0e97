"""Attention heads as units: per-head context vectors and attention probabilities.

``nn.MultiheadAttention`` computes its heads inside one fused call and uses
its ``out_proj`` weights functionally, so no module output holds a head. An
attention module has two parts, addressed like outputs (:mod:`insilico.units`):

- ``"attn:heads"``: the per-head context vectors before the output
  projection, ``(N, heads, L, head_dim)``; ``"attn:heads[5]"`` is head 5.
  Concatenated over heads (``heads.permute(0, 2, 1, 3).reshape(N, L, E)``)
  they are the tensor ``out_proj`` is applied to.
- ``"attn:weights"``: the attention probabilities ``(N, heads, L, S)``
  (each row sums to 1, before dropout).

They exist for ``nn.MultiheadAttention``, for any module whose own forward
calls ``F.scaled_dot_product_attention`` (its first call per module call),
and for attention written out in a module's own forward as
``softmax(q @ k.T) @ v`` (torchvision's Swin, timm's and DINO's ``Attention``):
there ``:weights`` is the first ``softmax`` of the forward (at least 3-d)
and ``:heads`` the ``matmul``/``bmm`` that multiplies it with the values,
both with the head axis after the batch axis, as such modules compute them
(Swin folds its windows into the batch axis: ``(N * windows, heads, ...)``).
Record, lesion and stimulate them like any unit: ``probe.lesion("attn:heads[5]")``
zeroes head 5's context before ``out_proj``, exactly as ablating the head by
hand; an edit of ``:weights`` changes the context computed from them.

How: the op watch (:mod:`insilico.ops`) sees the module's call of
``F.multi_head_attention_forward`` (or ``F.scaled_dot_product_attention``)
and runs :func:`multi_head_attention` / :func:`attend` instead, the same
math written out so the parts exist as tensors. The fused fast paths
(``torch._native_multi_head_attention``, ``nn.TransformerEncoderLayer``'s) are
switched off while parts are watched and switched back after, so they cannot
bypass the probe.

One probe at a time should watch the parts of one attention module (a second
probe's op watch would see the written-out math, not the fused call).

Written by hand because the fused kernels never materialise the parts; the
math follows ``torch.nn.functional.multi_head_attention_forward``.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .errors import UnitError

#: Names of the functions whose parts are exposed (names, not objects: tracers such as torchlens
#: replace torch's functions with wrappers of the same name).
FUNCTIONS = frozenset({"multi_head_attention_forward", "scaled_dot_product_attention"})
_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)
_SDPA_NAMES = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")

Emit = Callable[[str, torch.Tensor], torch.Tensor]


def run(func, args: tuple, kwargs: dict, emit: Emit) -> Any:
    """Run an attention function with its parts exposed: ``emit(part, tensor)`` may replace each part."""
    if getattr(func, "__name__", None) == "multi_head_attention_forward":
        return multi_head_attention(*args, emit=emit, **kwargs)
    named = dict(zip(_SDPA_NAMES, args))
    named.update(kwargs)
    return attend(emit=emit, **named)


def attend(query, key, value, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False, scale=None,
           enable_gqa: bool = False, emit: Emit | None = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` written out: weights, then context; both go through ``emit``.

    Shapes: query ``(N, heads, L, E)``, key/value ``(N, heads_kv, S, E)``; returns ``(N, heads, L, Ev)``.
    """
    if enable_gqa and key.size(-3) != query.size(-3):
        repeat = query.size(-3) // key.size(-3)
        key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
    length, source = query.size(-2), key.size(-2)
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * scale
    if is_causal:
        allowed = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    weights = torch.softmax(scores, dim=-1)
    if emit is not None:
        weights = emit("weights", weights)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    context = weights @ value
    if emit is not None:
        context = emit("heads", context)
    return context


def multi_head_attention(*args, emit: Emit | None = None, **kwargs):
    """``F.multi_head_attention_forward`` with its heads exposed (same arguments, same results)."""
    bound = _MHA_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    if a["static_k"] is not None or a["static_v"] is not None:
        raise UnitError("attention parts of nn.MultiheadAttention with static_k/static_v are not supported")
    query, key, value = a["query"], a["key"], a["value"]
    batched = query.dim() == 3
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
    length, batch, embed = query.shape
    heads = a["num_heads"]
    head_dim = embed // heads
    attn_mask, padding = a["attn_mask"], a["key_padding_mask"]
    if padding is not None and not batched:
        padding = padding.unsqueeze(0)

    if not a["use_separate_proj_weight"]:
        w_q, w_k, w_v = a["in_proj_weight"].chunk(3)
    else:
        w_q, w_k, w_v = a["q_proj_weight"], a["k_proj_weight"], a["v_proj_weight"]
    b_q = b_k = b_v = None
    if a["in_proj_bias"] is not None:
        b_q, b_k, b_v = a["in_proj_bias"].chunk(3)
    q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    attn_mask = _additive(attn_mask, q.dtype)
    padding = _additive(padding, q.dtype)
    if a["bias_k"] is not None:
        k = torch.cat([k, a["bias_k"].repeat(1, batch, 1)])
        v = torch.cat([v, a["bias_v"].repeat(1, batch, 1)])
        attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
        padding = None if padding is None else F.pad(padding, (0, 1))
    # (L, N, E) -> (N, heads, L, head_dim)
    q = q.reshape(length, batch, heads, head_dim).permute(1, 2, 0, 3)
    k = k.reshape(k.size(0), batch, heads, head_dim).permute(1, 2, 0, 3)
    v = v.reshape(v.size(0), batch, heads, head_dim).permute(1, 2, 0, 3)
    if a["add_zero_attn"]:
        k = torch.cat([k, k.new_zeros(batch, heads, 1, head_dim)], dim=2)
        v = torch.cat([v, v.new_zeros(batch, heads, 1, head_dim)], dim=2)
        attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
        padding = None if padding is None else F.pad(padding, (0, 1))
    source = k.size(2)
    mask = None
    if attn_mask is not None:
        mask = attn_mask.view(batch, heads, length, source) if attn_mask.dim() == 3 and attn_mask.size(0) > 1 \
            else attn_mask.reshape(1, 1, length, source)
    if padding is not None:
        padding = padding.view(batch, 1, 1, source)
        mask = padding if mask is None else mask + padding
    if a["is_causal"] and mask is None:
        raise UnitError("nn.MultiheadAttention with is_causal=True needs attn_mask (as torch requires)")
    dropout = a["dropout_p"] if a["training"] else 0.0
    context = attend(q, k, v, mask, dropout, False, None, emit=_keep_weights(emit, store := {}))
    merged = context.permute(2, 0, 1, 3).reshape(length, batch, embed)
    output = F.linear(merged, a["out_proj_weight"], a["out_proj_bias"])
    weights = None
    if a["need_weights"]:
        weights = store["weights"]
        if a["average_attn_weights"]:
            weights = weights.mean(dim=1)
    if not batched:
        output = output.squeeze(1)
        weights = None if weights is None else weights.squeeze(0)
    return output, weights


def _keep_weights(emit: Emit | None, store: dict) -> Emit:
    def keep(part, value):
        value = emit(part, value) if emit is not None else value
        store[part] = value
        return value

    return keep


def _additive(mask, dtype):
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


__all__ = ["FUNCTIONS", "attend", "multi_head_attention", "run"]
