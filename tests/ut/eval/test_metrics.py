import math

import pytest
import torch

from ut.eval.metrics import (
    babi_failed_tasks,
    babi_summary,
    babi_task_errors,
    char_accuracy,
    masked_nll,
    perplexity,
    sequence_accuracy,
    token_accuracy,
)

TARGET = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]])
MASK = torch.tensor([[True, True, True, True], [True, True, True, False]])
PREDS = torch.tensor([[5, 6, 7, 2], [8, 1, 2, 4]])  # one error in row 1, a wrong pad prediction ignored


def test_token_and_char_accuracy_respect_mask():
    assert token_accuracy(PREDS, TARGET, MASK).item() == pytest.approx(6 / 7)
    assert char_accuracy(PREDS, TARGET, MASK).item() == pytest.approx(6 / 7)
    assert token_accuracy(PREDS, TARGET).item() == pytest.approx(6 / 8)
    logits = torch.nn.functional.one_hot(PREDS, 10).float()
    assert token_accuracy(logits, TARGET, MASK).item() == pytest.approx(6 / 7)


def test_sequence_accuracy():
    assert sequence_accuracy(PREDS, TARGET, MASK).item() == pytest.approx(0.5)
    fixed = PREDS.clone()
    fixed[1, 1] = 9
    assert sequence_accuracy(fixed, TARGET, MASK).item() == 1.0  # pad position ignored
    assert sequence_accuracy(fixed, TARGET).item() == 0.5  # unmasked: pad mismatch counts
    empty = MASK.clone()
    empty[1] = False
    assert sequence_accuracy(PREDS, TARGET, empty).item() == 1.0  # empty rows not counted


def test_nll_and_perplexity():
    logits = torch.zeros(2, 4, 10)
    assert masked_nll(logits, TARGET, MASK).item() == pytest.approx(math.log(10))
    logits[0, :, :] = torch.log(torch.tensor([0.5] + [0.5 / 9] * 9))
    t = torch.zeros(2, 4, dtype=torch.long)
    m = torch.tensor([[True] * 4, [False] * 4])
    assert masked_nll(logits, t, m).item() == pytest.approx(math.log(2), rel=1e-5)
    assert perplexity(math.log(2)) == pytest.approx(2.0)
    assert perplexity(torch.tensor(0.0)) == 1.0


def test_babi_errors_and_failed_tasks():
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 4, 4])
    tasks = torch.tensor([1, 1, 1, 1, 2, 2, 2, 2, 3, 3])
    preds = labels.clone()
    preds[0] = 9  # task 1: 1/4 wrong
    preds[8] = 0  # task 3: 1/2 wrong
    err = babi_task_errors(preds, labels, tasks)
    assert err == {1: 0.25, 2: 0.0, 3: 0.5}
    assert babi_failed_tasks(err) == 2
    assert babi_failed_tasks({1: 0.05, 2: 0.051}) == 1  # error > 5% fails, exactly 5% passes
    s = babi_summary(err)
    assert s["mean_error"] == pytest.approx(0.25) and s["failed_tasks"] == 2 and s["n_tasks"] == 3
