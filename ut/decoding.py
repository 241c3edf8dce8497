"""Greedy and batched beam-search decoding, driven by each model's incremental-decoding cache.

Every model that generates implements the same two methods:

- ``start_decoding(batch) -> (DecodeState, first_tokens Long[B])``: encode the source (encoder-decoder) or run the
  prefix ``[input; sep]`` (decoder-only) once, filling the cache; ``first_tokens`` is what to feed first
  (BOS, or the last prefix token);
- ``decode_step(tokens Long[B], state) -> logits Float[B, V]``: feed one token per row, return the next-token
  logits, and extend the cache.

Beam search follows GNMT (Wu et al. 2016) for the length penalty, ``lp(len) = ((5 + len) / 6) ** alpha``, the form
used by tensor2tensor and the WikiSum paper (beam 4, alpha 0.6); Hugging Face divides by ``len ** alpha`` instead,
which is not the same. Hypotheses are finalised as in fairseq: a candidate ending in EOS is kept when it ranks within
the top ``beam`` candidates of its step, and a batch row is done once it holds ``beam`` finished hypotheses (so beam
1 is exactly greedy decoding, for any alpha). Rows that reach ``max_len`` finalise their live beams unterminated.

Padded prefixes: decoder-only models left-align their prefixes, which is exact for full attention. A model whose
attention cuts blocks by tensor index (local, memory-compressed: T-DMCA, UT-DMCA) says
``exact_with_padded_prefixes = False``; for it, a batch whose prefixes differ in length is decoded one row at a time
(each row then has no padding), so batched decoding equals decoding each example alone.

Shape legend: B batch, K beams, V vocabulary, T generated length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ut.nn.attention import DecodingCache


@dataclass
class DecodeState:
    """Everything a model carries between decode steps; ``reorder_`` follows the beams."""

    cache: DecodingCache
    tensors: dict[str, Tensor] = field(default_factory=dict)  # batch-first tensors (memory, masks, offsets, ...)
    step: int = 0  # tokens fed so far
    extras: dict = field(default_factory=dict)  # model-specific non-batch state

    def reorder_(self, index: Tensor) -> None:
        """Keep rows ``index`` (Long[B']) of every batch-first tensor and every cache."""
        self.cache.reorder_(index)
        self.tensors = {k: v.index_select(0, index) for k, v in self.tensors.items()}
        for obj in self.extras.values():
            if hasattr(obj, "reorder_"):
                obj.reorder_(index)


def gnmt_length_penalty(length: Tensor | int, alpha: float) -> Tensor | float:
    """((5 + len) / 6) ** alpha (Wu et al. 2016, eq. 14)."""
    return ((5.0 + length) / 6.0) ** alpha


@dataclass
class GreedyOutput:
    sequences: Tensor  # Long[B, T], generated tokens (EOS included when produced), pad after EOS
    scores: Tensor  # Float[B], summed log-probabilities
    lengths: Tensor  # Long[B], tokens up to and including EOS


def _rows_needing_separate_decoding(model, batch: dict[str, Tensor]) -> bool:
    """True for a model that is inexact on padded prefixes and a batch whose prefixes differ in length."""
    if getattr(model, "exact_with_padded_prefixes", True) or "attention_mask" not in batch:
        return False
    lengths = batch["attention_mask"].sum(1)
    return bool((lengths != lengths[0]).any())


def _row(batch: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    return {k: v[i : i + 1] for k, v in batch.items()}


def _pad_cat(tensors: list[Tensor], dim: int, value) -> Tensor:
    """Concatenate along dim 0 after right-padding ``dim`` to the longest."""
    n = max(t.shape[dim] for t in tensors)
    padded = []
    for t in tensors:
        pad = [0, 0] * (t.dim() - 1 - dim) + [0, n - t.shape[dim]]
        padded.append(torch.nn.functional.pad(t, pad, value=value))
    return torch.cat(padded, 0)


@torch.no_grad()
def greedy_decode(model, batch: dict[str, Tensor], max_len: int, eos_id: int, pad_id: int = 0) -> GreedyOutput:
    """Greedy decoding: the most likely token at every step, until EOS or ``max_len`` tokens."""
    if _rows_needing_separate_decoding(model, batch):
        rows = [greedy_decode(model, _row(batch, i), max_len, eos_id, pad_id) for i in range(len(batch["input_ids"]))]
        return GreedyOutput(_pad_cat([r.sequences for r in rows], 1, pad_id), torch.cat([r.scores for r in rows]),
                            torch.cat([r.lengths for r in rows]))
    state, tokens = model.start_decoding(batch)
    b = tokens.shape[0]
    out = torch.full((b, max_len), pad_id, dtype=torch.long, device=tokens.device)
    scores = torch.zeros(b, device=tokens.device)
    lengths = torch.full((b,), max_len, dtype=torch.long, device=tokens.device)
    done = torch.zeros(b, dtype=torch.bool, device=tokens.device)
    for t in range(max_len):
        logp = torch.log_softmax(model.decode_step(tokens, state).float(), dim=-1)
        best_lp, tokens = logp.max(dim=-1)
        tokens = tokens.masked_fill(done, pad_id)
        out[:, t] = tokens
        scores += best_lp.masked_fill(done, 0.0)
        newly = ~done & (tokens == eos_id)
        lengths[newly] = t + 1
        done |= newly
        if bool(done.all()):
            return GreedyOutput(out[:, : t + 1], scores, lengths)
    return GreedyOutput(out, scores, lengths)


@dataclass
class BeamSearchOutput:
    sequences: Tensor  # Long[B, K, T], hypotheses sorted by penalised score (best first), pad-filled
    scores: Tensor  # Float[B, K], penalised scores: log p / lp(len)
    log_probs: Tensor  # Float[B, K], raw summed log-probabilities
    lengths: Tensor  # Long[B, K]


@torch.no_grad()
def beam_search(
    model, batch: dict[str, Tensor], beam_size: int = 4, alpha: float = 0.6, max_len: int = 100, eos_id: int = 2,
    pad_id: int = 0,
) -> BeamSearchOutput:
    """Batched beam search with the GNMT length penalty (see module docstring)."""
    if _rows_needing_separate_decoding(model, batch):
        rows = [beam_search(model, _row(batch, i), beam_size, alpha, max_len, eos_id, pad_id)
                for i in range(len(batch["input_ids"]))]
        return BeamSearchOutput(_pad_cat([r.sequences for r in rows], 2, pad_id), torch.cat([r.scores for r in rows]),
                                torch.cat([r.log_probs for r in rows]), torch.cat([r.lengths for r in rows]))
    k = beam_size
    state, first = model.start_decoding(batch)
    b, device = first.shape[0], first.device
    state.reorder_(torch.arange(b, device=device).repeat_interleave(k))  # (B*K) rows, beam-major within a row
    tokens = first.repeat_interleave(k)
    alive_scores = torch.full((b, k), float("-inf"), device=device)
    alive_scores[:, 0] = 0.0  # all beams start identical: keep one
    alive_seqs = torch.zeros(b, k, 0, dtype=torch.long, device=device)
    finished: list[list[tuple[float, float, list[int]]]] = [[] for _ in range(b)]
    row_done = [False] * b

    for _ in range(max_len):
        logp = torch.log_softmax(model.decode_step(tokens, state).float(), dim=-1)  # (B*K, V)
        v = logp.shape[-1]
        cand = (alive_scores[:, :, None] + logp.view(b, k, v)).view(b, k * v)
        top_scores, top_idx = cand.topk(min(2 * k, k * v), dim=-1)  # (B, 2K)
        beam_idx, tok_idx = top_idx // v, top_idx % v
        next_scores = torch.full((b, k), float("-inf"), device=device)
        next_beam = torch.zeros(b, k, dtype=torch.long, device=device)
        next_tok = torch.full((b, k), pad_id, dtype=torch.long, device=device)
        ts, bi, ti = top_scores.tolist(), beam_idx.tolist(), tok_idx.tolist()
        for r in range(b):
            if row_done[r]:
                continue
            n_alive = 0
            for rank in range(len(ts[r])):
                score = ts[r][rank]
                if score == float("-inf"):
                    break
                if ti[r][rank] == eos_id:
                    if rank < k:  # fairseq: EOS counts when it ranks within the top K
                        seq = alive_seqs[r, bi[r][rank]].tolist() + [eos_id]
                        finished[r].append((score / gnmt_length_penalty(len(seq), alpha), score, seq))
                    continue
                if n_alive < k:
                    next_scores[r, n_alive] = score
                    next_beam[r, n_alive] = bi[r][rank]
                    next_tok[r, n_alive] = ti[r][rank]
                    n_alive += 1
            if len(finished[r]) >= k:
                row_done[r] = True
        if all(row_done):
            break
        # reorder the live beams and the model state
        flat = (torch.arange(b, device=device)[:, None] * k + next_beam).view(-1)
        state.reorder_(flat)
        alive_seqs = torch.cat([alive_seqs.gather(1, next_beam[:, :, None].expand(-1, -1, alive_seqs.shape[2])),
                                next_tok[:, :, None]], dim=2)
        alive_scores = next_scores
        tokens = next_tok.view(-1)
    # rows that ran out of length: their live beams become (unterminated) hypotheses
    for r in range(b):
        if not row_done[r]:
            for j in range(k):
                s = float(alive_scores[r, j])
                if s > float("-inf"):
                    seq = alive_seqs[r, j].tolist()
                    finished[r].append((s / gnmt_length_penalty(len(seq), alpha), s, seq))
    return _pack(finished, k, pad_id, device)


def _pack(finished, k: int, pad_id: int, device) -> BeamSearchOutput:
    b = len(finished)
    hyps = [sorted(f, key=lambda h: h[0], reverse=True)[:k] for f in finished]
    t = max((len(h[2]) for row in hyps for h in row), default=0)
    seqs = torch.full((b, k, max(t, 1)), pad_id, dtype=torch.long)
    scores = torch.full((b, k), float("-inf"))
    raw = torch.full((b, k), float("-inf"))
    lengths = torch.zeros(b, k, dtype=torch.long)
    for r, row in enumerate(hyps):
        for j, (pen, s, seq) in enumerate(row):
            seqs[r, j, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            scores[r, j], raw[r, j], lengths[r, j] = pen, s, len(seq)
    return BeamSearchOutput(seqs.to(device), scores.to(device), raw.to(device), lengths.to(device))
