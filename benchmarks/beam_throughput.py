"""Beam DirectRunner vs the single-machine WikiSum build on the same input, and a scale-out estimate.

Input: the real enwiki excerpt (206 pages, 106 articles) and a reference store written here with warcio:
up to ``--refs-per-article`` URLs that each article really cites, each given one of the 181 real web pages
of ../shared/data/web_refs (alternately a WARC ``response`` with the HTML and a WET ``conversion`` with
the page's plain text, as CommonCrawl ships them). Both builds use ``--source references``, all five
rankers, no ROUGE table.

Measured:
- wall time of each whole build (articles/s = ns-0 articles parsed per second; references/s = store
  records read per second, same input for every contender);
- CPU seconds per record of each pure stage, single process (``time.process_time``): page parse,
  WARC-HTML and WET reference conversion, example making (clone removal, paragraph filter, 5 rankers).
The estimate for the full English dump scales those per-record CPU costs (docs/beam.md explains it).

    python -m benchmarks.beam_throughput            # writes benchmarks/results/beam_throughput.{md,json}
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.machine import machine_description

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"

# the full English build (Liu et al. 2018, Table 1) and the dump it comes from
FULL_EXAMPLES = 2_330_000
FULL_REFERENCES = 90_000_000
FULL_NS0_PAGES = 16_000_000  # ns-0 pages of a recent enwiki pages-articles dump, redirects included (~6.9M articles)
FULL_ARTICLES = 6_900_000
# Dataflow batch list prices (us-central1), USD: check https://cloud.google.com/dataflow/pricing before use
PRICE_VCPU_HOUR, PRICE_GB_HOUR, PRICE_SHUFFLE_GB = 0.056, 0.003557, 0.011
WORKER_VCPUS, WORKER_GB = 4, 16  # n2-standard-4


def build_store(store_dir: Path, articles: list[dict], refs_per_article: int) -> int:
    """WARC responses (HTML) and WET conversions (text) for the articles' cited URLs; returns the record count."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    refs = SHARED / "web_refs" / "article_extraction_benchmark"
    truth = json.loads((refs / "ground-truth.json").read_text())
    page_ids = sorted(truth)
    store_dir.mkdir(parents=True)
    n = 0
    with open(store_dir / "refs.warc.gz", "wb") as warc_file, open(store_dir / "refs.wet.gz", "wb") as wet_file:
        warc, wet = WARCWriter(warc_file, gzip=True), WARCWriter(wet_file, gzip=True)
        for article in articles:
            for url in article["reference_urls"][:refs_per_article]:
                page_id = page_ids[n % len(page_ids)]
                if n % 2 == 0:
                    html = gzip.decompress((refs / "html" / f"{page_id}.html.gz").read_bytes())
                    headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
                    record = warc.create_warc_record(url, "response", payload=io.BytesIO(html), http_headers=headers)
                    warc.write_record(record)
                else:
                    text = truth[page_id]["articleBody"].encode("utf-8")
                    record = wet.create_warc_record(
                        url,
                        "conversion",
                        payload=io.BytesIO(text),
                        warc_headers_dict={"Content-Type": "text/plain; charset=utf-8"},
                    )
                    wet.write_record(record)
                n += 1
    return n


def stage_costs(dump: Path, store_dir: Path) -> dict:
    """CPU seconds per record of each pure stage, in this process (the single-machine functions)."""
    from data_prep.dump import iter_dump_pages
    from data_prep.example import ExampleConfig, make_example
    from data_prep.page_filter import page_skip_reason
    from data_prep.reference_store import ReferenceStore, iter_store_documents
    from data_prep.sources import reference_documents
    from data_prep.wikitext import parse_article

    clock = time.process_time
    t0 = clock()
    pages = list(iter_dump_pages(dump))
    t_read = clock() - t0
    articles, t_parse = [], 0.0
    for page in pages:
        t0 = clock()
        if page_skip_reason(page) is None:
            articles.append(parse_article(page["title"], page["wikitext"]))
        t_parse += clock() - t0
    costs = {"pages": len(pages), "articles": len(articles)}
    costs["read_s_per_page"] = t_read / len(pages)
    costs["parse_s_per_article"] = t_parse / len(articles)
    for name in ("refs.warc.gz", "refs.wet.gz"):
        t0 = clock()
        docs = list(iter_store_documents(store_dir / name))
        costs[f"{name.split('.')[1]}_s_per_reference"] = (clock() - t0) / max(len(docs), 1)
    store = ReferenceStore.from_paths([store_dir])
    config = ExampleConfig()
    t_example, n_examples, n_paragraphs, n_docs = 0.0, 0, 0, 0
    for article in articles:
        t0 = clock()
        documents, counts = reference_documents(article, store.get)
        example, _, _ = make_example(article, documents, counts, config)
        t_example += clock() - t0
        if example:
            n_examples += 1
            n_paragraphs += example["n_paragraphs"]
            n_docs += example["n_documents"]
    costs.update(
        examples=n_examples,
        example_s_per_article=t_example / len(articles),
        paragraphs_per_example=n_paragraphs / max(n_examples, 1),
        documents_per_example=n_docs / max(n_examples, 1),
        example_s_per_paragraph=t_example / max(n_paragraphs, 1),
    )
    return costs, articles


def timed_builds(dump: Path, store_dir: Path, workers: int, work: Path) -> list[dict]:
    from data_prep.beam_pipeline import run_beam_build
    from data_prep.build import BuildConfig, build_dataset

    common = dict(dumps=[str(dump)], source="references", reference_store=[str(store_dir)], eval_lengths=())
    runs = []
    for label, fn in (
        ("single machine, --num-proc 1", lambda o: build_dataset(out=o, num_proc=1, **common)),
        (f"single machine, --num-proc {workers}", lambda o: build_dataset(out=o, num_proc=workers, **common)),
        (
            f"Beam DirectRunner, {workers} workers (multi_processing)",
            lambda o: run_beam_build(BuildConfig(out=o, num_proc=workers, **common), "direct", []),
        ),
        (
            "Beam DirectRunner, 1 worker (in_memory)",
            lambda o: run_beam_build(BuildConfig(out=o, **common), "direct", []),
        ),
    ):
        out = work / f"run{len(runs)}"
        t0 = time.perf_counter()
        fn(str(out))
        seconds = time.perf_counter() - t0
        card = json.loads((out / "data_card.json").read_text())
        runs.append({"contender": label, "seconds": round(seconds, 2), "examples": card["counts"]["examples"]})
        shutil.rmtree(out)
    return runs


def estimate(costs: dict, beam_overhead: float, workers: int) -> dict:
    """Worker-hours for the full English build on Dataflow from the per-record CPU costs."""
    refs_per_example = FULL_REFERENCES / FULL_EXAMPLES
    # example cost grows with the paragraphs: scale the measured per-paragraph cost to ~39 references
    paragraphs_full = costs["paragraphs_per_example"] * refs_per_example / max(costs["documents_per_example"], 1e-9)
    example_s = costs["example_s_per_paragraph"] * min(paragraphs_full, 5000)
    cpu = {
        "read pages": FULL_NS0_PAGES * costs["read_s_per_page"] * 2,  # all namespaces ~2x the ns-0 pages
        "parse articles": FULL_ARTICLES * costs["parse_s_per_article"],
        "references (WET text)": FULL_REFERENCES * costs["wet_s_per_reference"],
        "make examples": FULL_EXAMPLES * example_s,
    }
    cpu_hours = sum(cpu.values()) / 3600 * beam_overhead
    worker_hours = cpu_hours / WORKER_VCPUS
    shuffle_gb = (FULL_REFERENCES * 6e3 + FULL_ARTICLES * 25e3 + FULL_EXAMPLES * 150e3) / 1e9
    cost = worker_hours * (WORKER_VCPUS * PRICE_VCPU_HOUR + WORKER_GB * PRICE_GB_HOUR) + shuffle_gb * PRICE_SHUFFLE_GB
    return {
        "paragraphs_per_full_example": round(paragraphs_full),
        "example_cpu_s_full": round(example_s, 3),
        "cpu_hours_by_stage": {k: round(v / 3600, 1) for k, v in cpu.items()},
        "beam_overhead": round(beam_overhead, 2),
        "cpu_hours": round(cpu_hours),
        "worker_hours_n2_standard_4": round(worker_hours),
        "hours_with_workers": {n: round(worker_hours / n, 1) for n in (50, 100, 250, 500)},
        "shuffle_gb": round(shuffle_gb),
        "usd": round(cost),
    }


def markdown(result: dict) -> str:
    m, c, e = result["machine"], result["costs"], result["estimate"]
    lines = [
        "# Beam DirectRunner vs the single-machine WikiSum build",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {m['cpu_model']}, {m['cpu_count']} logical CPUs, Python {m['python']}, load average at start "
        f"{[round(x, 2) for x in m['load_average_at_start']]}. **Shared with other engineers' jobs** (tests and "
        "training ran at the same time), so the wall times are noisy and 2 workers compete for 2 cores with them.",
        "",
        f"Input: the enwiki excerpt ({c['pages']} pages, {c['articles']} articles) and a warcio store of "
        f"{result['store_records']} references (half WARC HTML responses, half WET text conversions) at URLs the "
        "articles cite; `--source references`, 5 rankers, no ROUGE table. Same input for every row.",
        "",
        "| contender | wall s | examples | articles/s | references/s |",
        "|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        lines.append(
            f"| {run['contender']} | {run['seconds']} | {run['examples']} | "
            f"{c['articles'] / run['seconds']:.2f} | {result['store_records'] / run['seconds']:.1f} |"
        )
    lines += [
        "",
        "Per-record CPU cost of each pure stage (one process, `time.process_time`):",
        "",
        "| stage | CPU ms per record |",
        "|---|---|",
        f"| read a dump page (XML) | {1000 * c['read_s_per_page']:.2f} |",
        f"| parse an article (mwparserfromhell: sections + cited URLs) | {1000 * c['parse_s_per_article']:.1f} |",
        f"| WARC HTML response -> text (trafilatura) | {1000 * c['warc_s_per_reference']:.1f} |",
        f"| WET conversion record -> text | {1000 * c['wet_s_per_reference']:.2f} |",
        f"| make an example ({c['documents_per_example']:.1f} documents, {c['paragraphs_per_example']:.0f} "
        f"paragraphs: clones, filter, 5 rankers) | {1000 * c['example_s_per_article']:.1f} |",
        "",
        "## Estimate for the full English dump (2.33M examples, ~90M reference URLs), Dataflow",
        "",
        f"CPU-hours by stage: {e['cpu_hours_by_stage']}; Beam overhead factor {e['beam_overhead']} (Beam 1-worker "
        "wall / single-machine 1-process wall above: serialisation, shuffles, the runner). "
        f"Total **{e['cpu_hours']} CPU-hours = {e['worker_hours_n2_standard_4']} n2-standard-4 worker-hours**: "
        + ", ".join(f"{n} workers ~{h} h" for n, h in e["hours_with_workers"].items())
        + f". Shuffle ~{e['shuffle_gb']} GB. About **${e['usd']}** at Dataflow list prices "
        f"(${PRICE_VCPU_HOUR}/vCPU-h, ${PRICE_GB_HOUR}/GB-h, ${PRICE_SHUFFLE_GB}/shuffled GB). "
        "Method and caveats: docs/beam.md.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refs-per-article", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "beam_throughput"))
    args = parser.parse_args(argv)
    from data_prep.embedded_dump import embedded_dump_path

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    machine = machine_description()
    dump = embedded_dump_path()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        from data_prep.dump import iter_dump_pages
        from data_prep.page_filter import page_skip_reason
        from data_prep.wikitext import parse_article

        cited = [parse_article(p["title"], p["wikitext"]) for p in iter_dump_pages(dump) if not page_skip_reason(p)]
        store_records = build_store(work / "store", cited, args.refs_per_article)
        costs, _ = stage_costs(dump, work / "store")
        runs = timed_builds(dump, work / "store", args.workers, work)
    beam_1 = next(r for r in runs if "1 worker" in r["contender"])["seconds"]
    single_1 = runs[0]["seconds"]
    result = {
        "command": "python -m benchmarks.beam_throughput"
        + (f" --refs-per-article {args.refs_per_article}" if args.refs_per_article != 6 else "")
        + (f" --workers {args.workers}" if args.workers != 2 else ""),
        "machine": machine,
        "store_records": store_records,
        "costs": costs,
        "runs": runs,
        "estimate": estimate(costs, beam_1 / single_1, args.workers),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    Path(args.out + ".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
