#!/usr/bin/env python3
"""Gathers what scripts/lm-compare.sh measured into compare.json and compare.md (docs/compare/README.md).

    python3 scripts/lm-compare.py RESULTS_DIR OUT_DIR

RESULTS_DIR holds run.json (the run's settings, copied to the top of compare.json), steps.jsonl (one line per
step: name, rc, seconds), bench/<model>.json ('based4j bench gpu|cpu --json') and one folder per model:
train.yaml, metrics.jsonl, info-<context>.txt ('based4j info' output), ppl-val.json, ppl-heldout.json,
capitals.json, elements.json ('based4j eval --json'). Whatever is missing (a step that failed) is a dash in the
table; nothing here fails because a measurement is absent. compare.json and compare.md are written beside
themselves and renamed into place once whole.
Only the Python standard library is used.
"""
import json
import os
import re
import sys

LABELS = {"based": "BASED", "transformer": "Transformer++", "swa": "Sliding window"}


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_lines(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line cut short by a run that was stopped
    except OSError:
        pass
    return out


def info(path):
    """Parameters and total state bytes from the text 'based4j info' prints."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None, None
    params = re.search(r"^parameters\s+([\d,]+)", text, re.M)
    total = re.search(r"^\s+total\s+([\d,]+) bytes", text, re.M)
    return (int(params.group(1).replace(",", "")) if params else None,
            int(total.group(1).replace(",", "")) if total else None)


def layers(path):
    try:
        with open(path, encoding="utf-8") as f:
            m = re.search(r"^\s+layers:\s*\[([^\]]*)\]", f.read(), re.M)
            return m.group(1).replace(" ", "").split(",") if m else None
    except OSError:
        return None


def model_entry(results, name, run, steps):
    d = os.path.join(results, name)
    m = {"name": name, "label": LABELS.get(name, name), "layers": layers(os.path.join(d, "train.yaml"))}
    params = None
    state = {}
    for ctx in run.get("state_contexts", []):
        p, s = info(os.path.join(d, "info-%d.txt" % ctx))
        params = params or p
        if s is not None:
            state[str(ctx)] = s
    m["parameters"] = params
    m["state_bytes"] = state
    train = steps.get("train-" + name)
    m["train_seconds"] = train["seconds"] if train and train["rc"] == 0 else None
    metrics = read_lines(os.path.join(d, "metrics.jsonl"))
    logged = [r for r in metrics if "loss" in r and "tokens_per_s" in r]
    val = [r for r in metrics if "val_loss" in r]
    m["steps_done"] = logged[-1]["step"] if logged else None
    m["train_loss"] = logged[-1]["loss"] if logged else None
    m["train_tokens_per_s"] = logged[-1]["tokens_per_s"] if logged else None
    m["trainer_val_loss"] = val[-1]["val_loss"] if val else None
    for key in ("val", "heldout"):
        doc = read_json(os.path.join(d, "ppl-%s.json" % key)) or {}
        total = doc.get("total") or {}
        m[key + "_loss"] = total.get("loss")
        m[key + "_perplexity"] = total.get("perplexity")
        m[key + "_bits_per_byte"] = total.get("bits_per_byte")
        m[key + "_tokens"] = total.get("tokens")
    recall = []
    for task in ("capitals", "elements"):
        doc = read_json(os.path.join(d, task + ".json")) or {}
        for s in doc.get("sets", []):
            recall.append({"set": s["name"], "correct": s["correct"], "examples": s["examples"],
                           "accuracy": s["accuracy"], "truncated": s.get("truncated")})
    m["recall"] = recall
    for kind in ("in-context", "closed-book"):
        sets = [r for r in recall if r["set"].endswith("-" + kind)]
        examples = sum(r["examples"] for r in sets)
        m["recall_" + kind.replace("-", "_")] = (sum(r["correct"] for r in sets) / examples) if examples else None
    bench = read_json(os.path.join(results, "bench", name + ".json")) or {}
    decode = []
    for row in bench.get("results", []):
        if "decode_tokens_per_s" not in row:
            continue
        decode.append({"prompt_len": row.get("prompt_len", bench.get("prompt_len")), "batch": row["batch"],
                       "prefill_tokens_per_s": row.get("prefill_tokens_per_s"),
                       "decode_tokens_per_s": row["decode_tokens_per_s"],
                       "peak_gpu_bytes": row.get("peak_gpu_bytes")})
    m["decode"] = decode
    m["bench_device"] = bench.get("device") or bench.get("backend")
    return m


def fmt(v, spec="{:,.0f}"):
    return "-" if v is None else spec.format(v)


def recall_cell(m, set_name):
    for r in m["recall"]:
        if r["set"] == set_name:
            return "%d / %d" % (r["correct"], r["examples"])
    return "-"


def markdown(doc):
    models = doc["models"]
    rows = [("layers", lambda m: " ".join(m["layers"]) if m["layers"] else "-"),
            ("parameters", lambda m: fmt(m["parameters"])),
            ("training time (s)", lambda m: fmt(m["train_seconds"], "{:,.1f}")),
            ("training tokens/s", lambda m: fmt(m["train_tokens_per_s"])),
            ("training loss, last logged", lambda m: fmt(m["train_loss"], "{:.3f}")),
            ("validation loss (trainer's windows)", lambda m: fmt(m["trainer_val_loss"], "{:.3f}")),
            ("validation split: perplexity", lambda m: fmt(m["val_perplexity"], "{:.2f}")),
            ("validation split: bits per byte", lambda m: fmt(m["val_bits_per_byte"], "{:.3f}")),
            ("heldout-persuasion.txt: perplexity", lambda m: fmt(m["heldout_perplexity"], "{:.2f}"))]
    sets = []
    for m in models:
        for r in m["recall"]:
            if r["set"] not in sets:
                sets.append(r["set"])
    rows += [("recall: " + s, (lambda s: lambda m: recall_cell(m, s))(s)) for s in sets]
    for ctx in doc["state_contexts"]:
        rows.append(("state bytes per sequence at %d tokens" % ctx,
                     (lambda c: lambda m: fmt(m["state_bytes"].get(str(c))))(ctx)))
    configs = []
    for m in models:
        for r in m["decode"]:
            if (r["prompt_len"], r["batch"]) not in configs:
                configs.append((r["prompt_len"], r["batch"]))

    def decode(m, cfg, key):
        for r in m["decode"]:
            if (r["prompt_len"], r["batch"]) == cfg:
                return fmt(r[key])
        return "-"
    for cfg in configs:
        rows.append(("decode tokens/s, prompt %s, batch %d" % cfg, (lambda c: lambda m: decode(m, c, "decode_tokens_per_s"))(cfg)))
    for cfg in configs:
        rows.append(("prefill tokens/s, prompt %s, batch %d" % cfg, (lambda c: lambda m: decode(m, c, "prefill_tokens_per_s"))(cfg)))
    out = ["| | " + " | ".join(m["label"] for m in models) + " |",
           "|---|" + "---:|" * len(models)]
    for title, cell in rows:
        out.append("| " + title + " | " + " | ".join(cell(m) for m in models) + " |")
    head = ("%s updates of %s x %s tokens (%s tokens) per model on %s; evaluation windows of %s tokens."
            % (fmt(doc.get("steps")), fmt(doc.get("batch_size")), fmt(doc.get("seq_len")),
               fmt(doc.get("tokens_per_model")), doc.get("device", "-"), fmt(doc.get("eval_seq_len"))))
    failed = doc.get("failed_steps") or []
    tail = ["", "Steps that failed: " + ", ".join(failed) + " (their logs are in results.tar.gz)."] if failed else []
    return "\n".join([head, ""] + out + tail) + "\n"


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: lm-compare.py RESULTS_DIR OUT_DIR\n")
        return 2
    results, out = argv[1], argv[2]
    run = read_json(os.path.join(results, "run.json"))
    if run is None:
        sys.stderr.write("lm-compare.py: %s has no readable run.json\n" % results)
        return 1
    steps = {}
    for s in read_lines(os.path.join(results, "steps.jsonl")):
        steps[s["step"]] = s
    doc = dict(run)
    doc["models"] = [model_entry(results, name, run, steps) for name in run["models"]]
    doc["failed_steps"] = [s["step"] for s in steps.values() if s["rc"] != 0]
    doc["step_log"] = list(steps.values())
    write(os.path.join(out, "compare.json"), json.dumps(doc, indent=2) + "\n")
    write(os.path.join(out, "compare.md"), markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
