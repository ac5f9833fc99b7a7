"""Markdown report of bench/quantize_reference.sh: ptq's rows against
goldens/<model>/reference_quantizers.json (python3 standard library only)."""
import argparse
import json
import pathlib

# Pass rules on the generic-eval perplexity: RTN must reproduce the reference
# (same deterministic grid), GPTQ must be no worse than it, W8A8 at most reference
# + 0.1 % (issue 5). Rows without a reference (nf4, rtn-w4-g64) get no verdict.
RTN_TOLERANCE = 0.002
GPTQ_TOLERANCE = 0.003
W8A8_TOLERANCE = 0.001


def load(path):
    return json.loads(path.read_text()) if path.is_file() else None


def verdict(row, rel, partial):
    if rel is None or partial:
        return ""
    if row.startswith("rtn-"):
        return "pass" if abs(rel) <= RTN_TOLERANCE else "FAIL"
    if row.startswith("w8a8-"):
        return "pass" if rel <= W8A8_TOLERANCE else "FAIL"
    return "pass" if rel <= GPTQ_TOLERANCE else "FAIL"


def fmt(value, spec):
    return "—" if value is None else format(value, spec)


def model_rows(work, fixtures, model, rows):
    reference = load(fixtures / "goldens" / model / "reference_quantizers.json")
    lines, failures = [], []
    for row in rows:
        ref = reference.get(row)
        run = load(work / model / row / "run.json")
        ours = {s: load(work / model / row / f"{s}.json") for s in ("generic", "domain")}
        cells = [row]
        for s in ("generic", "domain"):
            o = ours[s] or {}
            cells += [fmt(o.get("ppl"), ".3f"), fmt(o.get("kl"), ".4f"), fmt(o.get("top1"), ".4f")]
        g = ours["generic"]
        rel = (g["ppl"] - ref["generic"]["ppl"]) / ref["generic"]["ppl"] if g and ref else None
        d = ours["domain"]
        rel_d = (d["ppl"] - ref["domain"]["ppl"]) / ref["domain"]["ppl"] if d and ref else None
        # A partial evaluation (--max-windows) predicts fewer tokens than the reference.
        partial = bool(g and ref and g["predicted_tokens"] != ref["generic"]["tokens"])
        v = verdict(row, rel, partial) if ref else "no reference"
        if v == "FAIL":
            failures.append(f"{model} {row}: generic ppl {g['ppl']:.3f} vs reference "
                            f"{ref['generic']['ppl']:.3f} ({rel:+.2%})")
        cells += [fmt(ref and ref["generic"]["ppl"], ".3f"), "—" if rel is None else f"{rel:+.3%}",
                  fmt(ref and ref["domain"]["ppl"], ".3f"), "—" if rel_d is None else f"{rel_d:+.3%}",
                  v or ("partial" if partial else "not run" if run is None else "not evaluated"),
                  fmt(run and run["seconds"], ".2f"), fmt(ref and ref.get("seconds"), ".2f"),
                  fmt(run and run.get("peak_rss_bytes") and run["peak_rss_bytes"] / 2**20, ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines, failures


def runs(work):
    """Every run's machine*.txt (one per run of the script whose results were merged here)."""
    return [dict(line.partition("=")[::2] for line in path.read_text().splitlines())
            for path in sorted(work.glob("machine*.txt"))]


def run_lines(m):
    coretype = f"OPENBLAS_CORETYPE={m['openblas_coretype']} " if m.get("openblas_coretype") else ""
    return [f"- `{coretype}{m.get('command', '?')}` ({m.get('date', '?')}, commit {m.get('commit', '?')})",
            f"  - machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('threads_online', '?')} "
            f"threads online; kernel {m.get('kernel', '?')}",
            f"  - quantization one row at a time with --threads {m.get('threads', '?')}; evaluations "
            f"{m.get('jobs', '?')} at a time, {m.get('threads', '?')}/{m.get('jobs', '?')} threads each"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=pathlib.Path, required=True)
    p.add_argument("--fixtures", type=pathlib.Path, required=True)
    p.add_argument("--models", required=True)
    p.add_argument("--rows", required=True)
    p.add_argument("--out", type=pathlib.Path, required=True)
    a = p.parse_args()
    rows = a.rows.split()
    text = ["# RTN, GPTQ, W8A8 and NF4 against the reference quantizers", "",
            "Written by `bench/quantize_reference.sh` (report: `bench/quantize_reference_report.py`).",
            "Protocol and reference numbers: shared/fixtures/PROTOCOL.md, \"Reference quantizers\";",
            "reference values from `goldens/<model>/reference_quantizers.json`.", "",
            "- Pass (generic ppl): RTN within ±0.2 % of the reference; GPTQ at most reference + 0.3 %;",
            "  W8A8 at most reference + 0.1 %. nf4-b64, rtn-w4-g64, the *-best and gptq-smoothquant-* rows\n"
            "  have no reference row.",
            "- ptq s: `seconds` of the output's run.json (load, calibration forward, quantization,",
            "  writing); ref s: the reference's seconds on one H100 (including a slow driver);",
            "  peak MiB: `peak_rss_bytes` of run.json, the quantize process's peak resident memory.", "",
            "Runs:", ""]
    for m in runs(a.work):
        text += run_lines(m)
    text.append("")
    all_failures = []
    for model in a.models.split():
        lines, failures = model_rows(a.work, a.fixtures, model, rows)
        all_failures += failures
        text += [f"## {model}", "",
                 "| run | generic ppl | generic KL | generic top-1 | domain ppl | domain KL | domain top-1 "
                 "| ref generic ppl | rel. diff | ref domain ppl | rel. diff (domain) | pass | ptq s | ref s | peak MiB |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|", *lines, ""]
    text += ["## Rows outside their tolerance", ""]
    text += [f"- {f}" for f in all_failures] or ["None."]
    a.out.write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
