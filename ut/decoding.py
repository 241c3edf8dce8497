"""Greedy and batched beam-search decoding, driven by each model's incremental-decoding cache.

The decoding protocol (:class:`Decodable`), which every model that generates implements:

- ``start_decoding(batch) -> (DecodeState, first_tokens Long[B])``: encode the source (encoder-decoder) or run the
  prefix ``[input; sep]`` (decoder-only) once, filling the cache; ``first_tokens`` is what to feed first
  (BOS, or the last prefix token);
- ``decode_step(tokens Long[B], state) -> logits Float[B, V]``: feed one token per row, return the next-token
  logits, and extend the cache;
- ``exact_with_padded_prefixes``: whether a batch of prefixes of different lengths decodes as each row alone
  (see "Padded prefixes" below).

The two methods are written once here, outside the models, as Hugging Face's generation mixin sits outside its
models: :class:`EncoderDecoderDecoding` on top of a model's ``encode`` / ``decode``, :class:`DecoderOnlyDecoding`
on top of a language model's ``decoder_states``. A model inherits the one that fits.

Beam search follows GNMT (Wu et al. 2016) for the length penalty, ``lp(len) = ((5 + len) / 6) ** alpha``, the form
used by tensor2tensor and the WikiSum paper (beam 4, alpha 0.6); Hugging Face divides by ``len ** alpha`` instead,
which is not the same. Hypotheses are finalised as in fairseq: a candidate ending in EOS is kept when it ranks within
the top ``beam`` candidates of its step, and a batch row is done once it holds ``beam`` finished hypotheses (so beam
1 is exactly greedy decoding, for any alpha). Rows that reach ``max_len`` finalise their live beams unterminated.

Constraints shared by every search (applied to the next-token log-probabilities before the choice; scores stay
the model's own log-probabilities of the chosen tokens):

- ``min_len``: EOS is forbidden while fewer than ``min_len`` tokens were generated (so an output holds at least
  ``min_len`` tokens before its EOS), as Hugging Face's ``min_length`` / fairseq's ``min_len``;
- ``no_repeat_ngram_size`` n: a token that would complete an n-gram already present in the hypothesis's generated
  tokens is forbidden (Paulus et al. 2018, "A Deep Reinforced Model for Abstractive Summarization", trigram
  blocking; fairseq / Hugging Face ``no_repeat_ngram_size``). Only generated tokens count, not the prefix (HF counts
  a decoder-only model's prompt too). When the constraints leave a row no token at all, it may end with EOS.

Sampling (:func:`sample_decode`, for language models): temperature, then top-k (Fan et al. 2018, "Hierarchical
Neural Story Generation"), then nucleus / top-p (Holtzman et al. 2020, "The Curious Case of Neural Text
Degeneration") on the constrained log-probabilities, the order Hugging Face uses. Temperature 0 or top-k 1 is the
argmax, i.e. greedy decoding. A ``torch.Generator`` makes sampling reproducible.

:class:`GenerationConfig` names one search with its settings and :func:`generate` runs it (used by prediction and
the ``ut.load`` API).

Padded prefixes: decoder-only models left-align their prefixes (:func:`decoding_prefix`), which is exact for full
attention. A model whose attention cuts blocks by tensor index (local, memory-compressed: T-DMCA, UT-DMCA) has
``exact_with_padded_prefixes`` False; for it, a batch (with an ``attention_mask``) whose prefixes differ in length
is decoded one row at a time (each row then has no padding), so batched decoding equals decoding each example alone.

Shape legend: B batch, K beams, V vocabulary, T generated length, P prefix length, S source length, D width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from ut.nn.attention import DecodingCache, elide_mask, key_padding_mask


@dataclass
class DecodeState:
    """Everything a model carries between decode steps; ``reorder_`` follows the beams.

    ``tensors`` follow every reorder; ``per_example`` holds what is the same for every beam of one example (the
    encoder memory, its mask, the position offsets; None for "not needed", e.g. a mask that allows everything): it
    follows the expansion to beams but not the beam reorders within an example, which would only copy equal rows.
    """

    cache: DecodingCache
    tensors: dict[str, Tensor] = field(default_factory=dict)  # batch-first tensors that follow the beams
    step: int = 0  # tokens fed so far
    per_example: dict[str, Tensor | None] = field(default_factory=dict)  # batch-first, equal across an example's beams

    def reorder_(self, index: Tensor, within_examples: bool = False) -> None:
        """Keep rows ``index`` (Long[B']) of every batch-first tensor and every cache. ``within_examples``: ``index``
        only moves rows among the beams of one example (beam search's step), so ``per_example`` tensors and the
        caches' per-example sites (cross-attention keys and values) stay as they are."""
        self.cache.reorder_(index, within_examples)
        self.tensors = {k: v.index_select(0, index) for k, v in self.tensors.items()}
        if not within_examples:
            self.per_example = {k: None if v is None else v.index_select(0, index) for k, v in self.per_example.items()}


class Decodable(Protocol):
    """What the searches below call (module docstring)."""

    exact_with_padded_prefixes: bool  # read for batches with an ``attention_mask`` (decoder-only prefixes) only

    def start_decoding(self, batch: dict[str, Tensor]) -> tuple[DecodeState, Tensor]: ...

    def decode_step(self, tokens: Tensor, state: DecodeState) -> Tensor: ...


class EncoderDecoderDecoding:
    """The decoding protocol of an encoder-decoder, on top of its

    - ``encode(src, src_mask, src_pos_offset) -> StackOutput`` (``.output`` the memory (B, S, D), ``.token_mask``
      the resolved source mask) and
    - ``decode(tgt_in, memory, src_mask, *, positions, cache) -> (logits (B, T, V), ...)``, and ``cfg.bos_id``.

    ``start_decoding`` encodes the source once and returns BOS; target position t is ``tgt_pos_offset + t``. The
    state's ``per_example`` holds the memory, the source mask (None when it allows every position on CPU: the
    attention would drop it anyway, :func:`ut.nn.masks.elide_mask`; ``decode`` takes None for "no padding") and the
    target position offset.
    """

    exact_with_padded_prefixes = True  # the prefix is BOS alone: never padded

    def start_decoding(self, batch: dict[str, Tensor]) -> tuple[DecodeState, Tensor]:
        src = batch["src"]
        enc = self.encode(src, batch.get("src_mask"), batch.get("src_pos_offset"))
        offset = batch.get("tgt_pos_offset")
        offset = torch.zeros(src.shape[0], dtype=torch.long, device=src.device) if offset is None else offset
        src_mask = None if enc.token_mask is None else elide_mask(enc.token_mask)
        state = DecodeState(DecodingCache(), per_example={"memory": enc.output, "src_mask": src_mask,
                                                          "offset": offset})
        return state, torch.full((src.shape[0],), self.cfg.bos_id, dtype=torch.long, device=src.device)

    def decode_step(self, tokens: Tensor, state: DecodeState) -> Tensor:
        t = state.per_example
        positions = (t["offset"] + state.step)[:, None]
        logits = self.decode(tokens[:, None], t["memory"], t["src_mask"], positions=positions, cache=state.cache)[0]
        state.step += 1
        return logits[:, -1]


class DecoderOnlyDecoding:
    """The decoding protocol of a language model over ``[input; sep; target]``, on top of its

    - ``decoder_states(input_ids, positions, token_mask, self_mask, cache) -> StackOutput`` (final states of the new
      positions, extending ``cache``), ``output`` (the softmax layer) and ``cfg.pad_id``.

    ``start_decoding`` runs the prefix ``[input; sep]`` of ``input_ids`` / ``attention_mask`` (any padding side),
    left-aligned by :func:`decoding_prefix`, except its last token, into the cache and returns that last token (the
    separator) as the first to feed. The state keeps the key mask over the cached positions and the next position.
    """

    exact_with_padded_prefixes: bool = True

    def start_decoding(self, batch: dict[str, Tensor]) -> tuple[DecodeState, Tensor]:
        ids, mask, pos = decoding_prefix(batch, self.cfg.pad_id)
        cache = DecodingCache()
        if ids.shape[1] > 1:
            pre_mask = mask[:, :-1]
            self.decoder_states(ids[:, :-1], pos[:, :-1], pre_mask, key_padding_mask(pre_mask), cache)
        return DecodeState(cache, {"key_mask": mask[:, :-1], "next_pos": pos[:, -1]}), ids[:, -1]

    def decode_step(self, tokens: Tensor, state: DecodeState) -> Tensor:
        t = state.tensors
        key_mask = torch.cat([t["key_mask"], torch.ones_like(tokens[:, None], dtype=torch.bool)], dim=1)
        state.tensors = {"key_mask": key_mask, "next_pos": t["next_pos"] + 1}
        state.step += 1
        h = self.decoder_states(tokens[:, None], t["next_pos"][:, None], None, key_padding_mask(key_mask),
                                state.cache).output
        return self.output(h)[:, -1]


def left_align(ids: Tensor, mask: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """Move each row's real tokens to the right end (left padding), keeping their order."""
    order = torch.sort(mask.long(), dim=1, stable=True).indices  # pads (0) first, then real tokens, order kept
    ids = ids.gather(1, order)
    mask = mask.gather(1, order)
    return ids.masked_fill(~mask, pad_id), mask


def decoding_prefix(batch: dict[str, Tensor], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """The prefix ``[input; sep]`` of an LM batch (any padding side), left-aligned so that every row's next token
    sits at the same index -> ``(ids Long[B, P], mask Bool[B, P], positions Long[B, P])``; columns of padding in
    every row are dropped."""
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    mask = ids != pad_id if mask is None else mask.bool()
    ids, mask = left_align(ids, mask, pad_id)
    n_pad_columns = int((~mask).all(0).long().sum())  # columns of padding in every row (all of it, for one row)
    ids, mask = ids[:, n_pad_columns:], mask[:, n_pad_columns:]
    return ids, mask, (mask.long().cumsum(1) - 1).clamp(min=0)


def gnmt_length_penalty(length: Tensor | int, alpha: float) -> Tensor | float:
    """((5 + len) / 6) ** alpha (Wu et al. 2016, eq. 14)."""
    return ((5.0 + length) / 6.0) ** alpha


def _ngram_bans(seq: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already in ``seq`` (the generated tokens of one hypothesis)."""
    if n <= 0 or len(seq) < n - 1:
        return []
    if n == 1:
        return list(set(seq))
    prefix = tuple(seq[len(seq) - n + 1 :])
    return [seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i : i + n - 1]) == prefix]


def constrain_log_probs(logp: Tensor, generated: Tensor, eos_id: int, min_len: int = 0,
                        no_repeat_ngram_size: int = 0) -> Tensor:
    """Apply ``min_len`` and ``no_repeat_ngram_size`` (module docstring) to next-token log-probabilities.

    Args:
        logp: Float[R, V], one row per hypothesis.
        generated: Long[R, t], the tokens each hypothesis generated so far.
    Returns a copy with forbidden tokens at -inf; a row left with no token gets EOS back.
    """
    t = generated.shape[1]
    if (min_len <= 0 or t >= min_len) and no_repeat_ngram_size <= 0:
        return logp
    original, logp = logp, logp.clone()
    if t < min_len:
        logp[:, eos_id] = float("-inf")
    if no_repeat_ngram_size > 0 and t >= no_repeat_ngram_size - 1:
        for r, seq in enumerate(generated.tolist()):
            bans = _ngram_bans(seq, no_repeat_ngram_size)
            if bans:
                logp[r, bans] = float("-inf")
    dead = torch.isneginf(logp).all(-1)
    if bool(dead.any()):
        logp[dead, eos_id] = original[dead, eos_id]
    return logp


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row (ties at the k-th value kept), the rest -inf; ``k <= 0``: all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering (Holtzman et al. 2020): keep the smallest set of most likely tokens whose probability sums
    to at least ``p`` (the most likely token always), the rest -inf; ``p >= 1``: all."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    mass_before = probs.cumsum(-1) - probs  # probability of the tokens ranked above
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


@dataclass
class GreedyOutput:
    sequences: Tensor  # Long[B, T], generated tokens (EOS included when produced), pad after EOS
    scores: Tensor  # Float[B], summed log-probabilities
    lengths: Tensor  # Long[B], tokens up to and including EOS


def _rows_needing_separate_decoding(model: Decodable, batch: dict[str, Tensor]) -> bool:
    """True for a model that is inexact on padded prefixes and a batch whose prefixes differ in length."""
    if "attention_mask" not in batch or model.exact_with_padded_prefixes:
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
def greedy_decode(model, batch: dict[str, Tensor], max_len: int, eos_id: int, pad_id: int = 0, *,
                  min_len: int = 0, no_repeat_ngram_size: int = 0) -> GreedyOutput:
    """Greedy decoding: the most likely allowed token at every step, until EOS or ``max_len`` tokens."""
    return _left_to_right(model, batch, max_len, eos_id, pad_id, min_len, no_repeat_ngram_size, None)


@torch.no_grad()
def sample_decode(model, batch: dict[str, Tensor], max_len: int, eos_id: int, pad_id: int = 0, *,
                  temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_len: int = 0,
                  no_repeat_ngram_size: int = 0, generator: torch.Generator | None = None) -> GreedyOutput:
    """Ancestral sampling with temperature, top-k and top-p (module docstring); ``scores`` are the model's summed
    log-probabilities of the sampled tokens (before temperature and filtering)."""
    if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1; got {temperature}, {top_k}, {top_p}")

    def pick(logp: Tensor) -> Tensor:
        if temperature == 0 or top_k == 1:
            return logp.argmax(-1)
        logits = top_p_filter(top_k_filter(logp / temperature, top_k), top_p)
        return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)

    return _left_to_right(model, batch, max_len, eos_id, pad_id, min_len, no_repeat_ngram_size, pick)


def _left_to_right(model, batch, max_len, eos_id, pad_id, min_len, no_repeat_ngram_size, pick) -> GreedyOutput:
    """One token per step per row, chosen by ``pick(constrained log-probs) -> Long[B]`` (None: argmax)."""
    if _rows_needing_separate_decoding(model, batch):
        rows = [_left_to_right(model, _row(batch, i), max_len, eos_id, pad_id, min_len, no_repeat_ngram_size, pick)
                for i in range(len(batch["input_ids"]))]
        return GreedyOutput(_pad_cat([r.sequences for r in rows], 1, pad_id), torch.cat([r.scores for r in rows]),
                            torch.cat([r.lengths for r in rows]))
    state, tokens = model.start_decoding(batch)
    b = tokens.shape[0]
    out = torch.full((b, max_len), pad_id, dtype=torch.long, device=tokens.device)
    scores = torch.zeros(b, device=tokens.device)
    lengths = torch.full((b,), max_len, dtype=torch.long, device=tokens.device)
    done = torch.zeros(b, dtype=torch.bool, device=tokens.device)
    any_done = False  # whether a row finished: until then the finished-row masking is skipped (same result)
    for t in range(max_len):
        logp = torch.log_softmax(model.decode_step(tokens, state).float(), dim=-1)
        allowed = constrain_log_probs(logp, out[:, :t], eos_id, min_len, no_repeat_ngram_size)
        tokens = allowed.argmax(-1) if pick is None else pick(allowed)
        chosen_lp = logp.gather(1, tokens[:, None]).squeeze(1)
        newly = tokens == eos_id
        if any_done:
            tokens = tokens.masked_fill(done, pad_id)
            chosen_lp = chosen_lp.masked_fill(done, 0.0)
            newly &= ~done
        out[:, t] = tokens
        scores += chosen_lp
        lengths.masked_fill_(newly, t + 1)
        done |= newly
        n_done = int(done.sum())  # the one host read of the step
        if n_done == b:
            return GreedyOutput(out[:, : t + 1], scores, lengths)
        any_done = n_done > 0
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
    pad_id: int = 0, *, min_len: int = 0, no_repeat_ngram_size: int = 0,
) -> BeamSearchOutput:
    """Batched beam search with the GNMT length penalty and the shared constraints (see module docstring)."""
    if _rows_needing_separate_decoding(model, batch):
        rows = [beam_search(model, _row(batch, i), beam_size, alpha, max_len, eos_id, pad_id, min_len=min_len,
                            no_repeat_ngram_size=no_repeat_ngram_size)
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
        logp = constrain_log_probs(logp, alive_seqs.reshape(b * k, -1), eos_id, min_len, no_repeat_ngram_size)
        v = logp.shape[-1]
        cand = (alive_scores[:, :, None] + logp.view(b, k, v)).view(b, k * v)
        top_scores, top_idx = cand.topk(min(2 * k, k * v), dim=-1)  # (B, 2K)
        beam_idx, tok_idx = top_idx // v, top_idx % v
        next_scores, next_beam, next_tok = _choose_candidates(top_scores, beam_idx, tok_idx, alive_seqs, finished,
                                                              row_done, eos_id, pad_id, alpha)
        if all(row_done):
            break
        # reorder the live beams and the model state
        flat = (torch.arange(b, device=device)[:, None] * k + next_beam).view(-1)
        state.reorder_(flat, within_examples=True)
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


def _choose_candidates(top_scores: Tensor, beam_idx: Tensor, tok_idx: Tensor, alive_seqs: Tensor,
                       finished: list[list[tuple[float, float, list[int]]]], row_done: list[bool], eos_id: int,
                       pad_id: int, alpha: float) -> tuple[Tensor, Tensor, Tensor]:
    """One beam-search step's choice per row among the (B, 2K) best candidates (fairseq's rule, module docstring):
    an EOS ranked within the top K finishes a hypothesis (into ``finished``), the K best others live on; a row with
    K finished hypotheses is done (``row_done``). -> (scores, source beams, tokens) of the live beams, each (B, K)."""
    (b, k), device = alive_seqs.shape[:2], alive_seqs.device
    next_scores = [[float("-inf")] * k for _ in range(b)]
    next_beam = [[0] * k for _ in range(b)]
    next_tok = [[pad_id] * k for _ in range(b)]
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
                next_scores[r][n_alive], next_beam[r][n_alive], next_tok[r][n_alive] = score, bi[r][rank], ti[r][rank]
                n_alive += 1
        if len(finished[r]) >= k:
            row_done[r] = True
    return (torch.tensor(next_scores, dtype=top_scores.dtype, device=device),
            torch.tensor(next_beam, dtype=torch.long, device=device),
            torch.tensor(next_tok, dtype=torch.long, device=device))


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


@dataclass
class GenerationConfig:
    """One search and its settings (what :func:`generate` runs).

    Greedy by default; ``beam_size > 1``: beam search; ``sample=True``: sampling (language models, the UT paper's
    LAMBADA and WikiSum T-D models alike). Liu et al. 2018 decode WikiSum with beam 4, alpha 0.6.
    """

    beam_size: int = 1  # hypotheses kept per row (1: greedy)
    alpha: float = 0.6  # GNMT length penalty exponent (beam search only)
    max_len: int = 100  # generated tokens at most (EOS included)
    min_len: int = 0  # EOS forbidden before this many generated tokens
    no_repeat_ngram_size: int = 0  # forbid repeating an n-gram of the output (0: off; 3: trigram blocking)
    sample: bool = False  # sample instead of taking the argmax
    temperature: float = 1.0  # sampling temperature (0: argmax)
    top_k: int = 0  # sample among the k most likely tokens (0: all)
    top_p: float = 1.0  # sample within the nucleus of this probability mass (1: all)
    seed: int | None = None  # sampling seed (None: the global torch generator)

    def __post_init__(self):
        problems = []
        if self.beam_size < 1:
            problems.append(f"beam_size={self.beam_size} must be >= 1")
        if self.max_len < 1:
            problems.append(f"max_len={self.max_len} must be >= 1")
        if not 0 <= self.min_len <= self.max_len:
            problems.append(f"min_len={self.min_len} must be in [0, max_len={self.max_len}]")
        if self.no_repeat_ngram_size < 0:
            problems.append(f"no_repeat_ngram_size={self.no_repeat_ngram_size} must be >= 0")
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            problems.append(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1 (got {self.temperature}, "
                            f"{self.top_k}, {self.top_p})")
        if self.sample and self.beam_size > 1:
            problems.append("sampling is one hypothesis per row: use beam_size=1 with sample=True")
        if problems:
            raise ValueError("GenerationConfig: " + "; ".join(problems))


@dataclass
class Generated:
    sequences: Tensor  # Long[B, T], the best (or sampled) output of each row, EOS included when produced, pad after
    scores: Tensor  # Float[B], summed log-probabilities (beam search: penalised by lp(len))
    lengths: Tensor  # Long[B], tokens up to and including EOS


def generate(model, batch: dict[str, Tensor], config: GenerationConfig, eos_id: int, pad_id: int = 0) -> Generated:
    """Run the search ``config`` names on ``batch`` (the model's decoding protocol, module docstring)."""
    c = config
    constraints = {"min_len": c.min_len, "no_repeat_ngram_size": c.no_repeat_ngram_size}
    if c.beam_size > 1:
        out = beam_search(model, batch, c.beam_size, c.alpha, c.max_len, eos_id, pad_id, **constraints)
        return Generated(out.sequences[:, 0], out.scores[:, 0], out.lengths[:, 0])
    if c.sample:
        gen = None
        if c.seed is not None:
            device = next((v.device for v in batch.values() if isinstance(v, Tensor)), torch.device("cpu"))
            gen = torch.Generator(device=device).manual_seed(c.seed)
        out = sample_decode(model, batch, c.max_len, eos_id, pad_id, temperature=c.temperature, top_k=c.top_k,
                            top_p=c.top_p, generator=gen, **constraints)
    else:
        out = greedy_decode(model, batch, c.max_len, eos_id, pad_id, **constraints)
    return Generated(out.sequences, out.scores, out.lengths)
