"""Training callbacks: resumable data order, attention maps, ACT ponder maps, results tables, run records, the
WikiSum evaluation, non-finite loss guard, prediction writer, opt-in torch.compile."""

from ut.lit.callbacks.attention_maps import AttentionMapCallback
from ut.lit.callbacks.compile_model import CompileModel
from ut.lit.callbacks.nonfinite import NonFiniteLossError, NonFiniteLossGuard
from ut.lit.callbacks.ponder_maps import PonderMapCallback
from ut.lit.callbacks.prediction_writer import PredictionWriter
from ut.lit.callbacks.results_table import ResultsTableCallback
from ut.lit.callbacks.resumable_order import ResumableBatchSampler, ResumableDataOrder, ResumableShuffleSampler
from ut.lit.callbacks.run_record import RunRecordCallback
from ut.lit.callbacks.summarization_eval import SummarizationEvalCallback

__all__ = ["AttentionMapCallback", "CompileModel", "NonFiniteLossError", "NonFiniteLossGuard", "PonderMapCallback",
           "PredictionWriter", "ResultsTableCallback", "ResumableBatchSampler", "ResumableDataOrder",
           "ResumableShuffleSampler", "RunRecordCallback", "SummarizationEvalCallback"]
