"""The configuration of a WikiSum-style build (Liu et al. 2018, "Generating Wikipedia by Summarizing Long
Sequences"), shared by the single-machine build (:mod:`data_prep.build`), the Beam build
(:mod:`data_prep.beam.running`) and the command line (:mod:`data_prep.cli`), and the names of the files a
build writes in its output folder (data_prep/README.md, "Output layout")."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from data_prep.example import DEFAULT_RANKERS, ExampleConfig
from data_prep.extractive_eval import DEFAULT_EVAL_LENGTHS
from data_prep.page_filter import DEFAULT_MAX_WIKITEXT_CHARS
from data_prep.sources import SOURCES
from data_prep.splits import DEFAULT_FRACTIONS

DATASET_DIR = "dataset"
TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS_FILE = "special_tokens.json"
CONFIG_FILE = "build_config.json"
DEFAULT_INPUT_LENGTHS = (100, 500, 2000, 11000)


@dataclass
class BuildConfig:
    """Everything that determines a build's bytes (saved as ``build_config.json``)."""

    out: str  # output folder (created atomically)
    dumps: list[str] = field(default_factory=list)  # MediaWiki XML dumps; none and no articles = embedded
    articles: list[str] = field(default_factory=list)  # JSONL/Parquet {title, text} files instead of dumps
    source: str = "wiki-body"  # wiki-body (offline stand-in) | references | search
    reference_store: list[str] = field(default_factory=list)  # WARC/WET/JSONL files or folders
    search_results: str | None = None  # JSONL {title, results} for source=search
    rankers: tuple[str, ...] = DEFAULT_RANKERS
    input_lengths: tuple[int, ...] = DEFAULT_INPUT_LENGTHS  # L values; token ids are stored up to max(L)
    eval_lengths: tuple[int, ...] = DEFAULT_EVAL_LENGTHS  # L (words) of the extractive ROUGE table; () = skip
    target_mode: str = "lead"
    vocab_size: int | None = None  # None: 2^15, smaller for a small corpus
    split_fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    max_articles: int | None = None  # stop after this many examples (a quick sample)
    max_wikitext_chars: int = DEFAULT_MAX_WIKITEXT_CHARS
    remove_clones: bool = True
    min_source_words: int = ExampleConfig.min_source_words  # see ExampleConfig: "source_too_short"
    min_source_target_ratio: float = ExampleConfig.min_source_target_ratio  # "source_shorter_than_target"
    num_proc: int = 1  # worker processes (per-article stage and ROUGE; Beam: DirectRunner workers)

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {self.source!r}")
        if self.source == "references" and not self.reference_store:
            raise ValueError("--source references needs --reference-store (WARC/WET/JSONL files or folder)")
        if self.source == "search" and not self.search_results:
            raise ValueError("--source search needs --search-results (JSONL of results per title)")
        if self.dumps and self.articles:
            raise ValueError("give --dump or --articles, not both")
        if not self.input_lengths or min(self.input_lengths) < 1:
            raise ValueError("input_lengths must be positive token counts")
        self.rankers = tuple(self.rankers)
        self.input_lengths = tuple(sorted(set(self.input_lengths)))
        self.eval_lengths = tuple(sorted(set(self.eval_lengths)))
        self.split_fractions = tuple(self.split_fractions)
        self.example_config()  # validates rankers, target_mode and the minimum-source filters

    def example_config(self) -> ExampleConfig:
        """How each article of this build becomes an example (the same for the Beam pipeline)."""
        return ExampleConfig(
            rankers=self.rankers,
            max_input_words=max(self.input_lengths),
            target_mode=self.target_mode,
            remove_clones=self.remove_clones,
            source_is_article=self.source == "wiki-body",
            min_source_words=self.min_source_words,
            min_source_target_ratio=self.min_source_target_ratio,
        )

    def identity(self) -> dict:
        """The fields that decide the output (``num_proc`` and ``out`` do not)."""
        fields = asdict(self)
        fields.pop("num_proc")
        fields.pop("out")
        return json.loads(json.dumps(fields))
