"""Small shared test utilities: tiny batches and an overfitting loop."""

import torch


def padded(rows, pad_id=0):
    """List of token lists -> (Long[B, L], Bool[B, L]) right-padded."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    return ids, mask


def copy_batch(batch=8, length=6, vocab=12, seed=0, bos=1, eos=2, first_symbol=5):
    """A tiny copy task: y = x, tgt_in = BOS + y, tgt_out = y + EOS."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(first_symbol, vocab, (batch, length), generator=g)
    tgt_in = torch.cat([torch.full((batch, 1), bos), src], 1)
    tgt_out = torch.cat([src, torch.full((batch, 1), eos)], 1)
    return {"src": src, "src_mask": torch.ones_like(src, dtype=torch.bool), "tgt_in": tgt_in, "tgt_out": tgt_out}


def overfit_seq2seq(model, batch, steps=300, lr=3e-3):
    """Train on one batch; return the final token accuracy on it."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        out = model(batch["src"], batch["src_mask"], batch["tgt_in"])
        loss = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), batch["tgt_out"].flatten())
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(batch["src"], batch["src_mask"], batch["tgt_in"]).logits.argmax(-1)
    return (pred == batch["tgt_out"]).float().mean().item()
