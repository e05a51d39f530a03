#!/usr/bin/env bash
# The language-model comparison in miniature (docs/compare/README.md): BASED, Transformer++ and sliding-window
# attention of equal parameter count, trained on the same tokens with the same schedule (docs/compare/*.yaml), then
# validation perplexity, the recall probes, state bytes per sequence and decode tokens/s side by side.
#
#   scripts/lm-compare.sh pack [maven options]   here: builds the bundle (scripts/bundle.sh) and packs what the run
#                                                needs of it into devdata/based4j-bundle.tar.xz
#   scripts/lm-compare.sh [run]                  on the GPU machine, from the repository root, with
#                                                devdata/shards.tar.xz (and the packed bundle, or bundle/based4j)
#   scripts/lm-compare.sh report RESULTS OUTDIR  here: compare.json, compare.md and the charts from a run's results
#                                                (results.tar.gz unpacked), with the full JDK's based4j
#
# The run leaves in $OUT (default ./compare-out): compare.json, compare.md, results.tar.gz (every measurement's
# JSON, the training logs, the step logs), run.log, and the charts loss.png, state.png, decode.png where the Java
# runtime can draw them (the bundle's cannot: then run 'report' here). compare.json, compare.md and results.tar.gz
# are rewritten after every step, so a run stopped early still leaves what it measured. A failing step is logged
# and the others go on.
#
# Environment: OUT; COMPARE_WORK (scratch, default /tmp/lm-compare, replaced); COMPARE_MODELS (default
# "based transformer swa"); STEPS (updates, default the configurations' 1000); TRAIN_TIMEOUT (seconds a training
# may take, default 240); BASED4J (the based4j command to use); COMPARE_TINY=1: a check of the whole script on a
# CPU: 3 updates of one sequence, a small validation set, bench cpu.
set -uo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
MODE="${1:-run}"
MODELS=(${COMPARE_MODELS:-based transformer swa})
PACK="$ROOT/devdata/based4j-bundle.tar.xz"
HELDOUT="$ROOT/models/based-small/heldout-persuasion.txt"
STATE_CONTEXTS=(512 2048)

command -v timeout >/dev/null || timeout() { shift 3; "$@"; } # timeout -k S LIMIT COMMAND... without limits
say() { echo "[lm-compare $(date +%H:%M:%S)] $*" >&2; }
die() { echo "[lm-compare] error: $*" >&2; exit 1; }

pack() {
    shift
    "$ROOT/scripts/bundle.sh" "$@" || die "scripts/bundle.sh failed"
    mkdir -p "$ROOT/devdata"
    # the runtime, the jars and the launcher: the test jars and the test model stay out
    tar -C "$ROOT/bundle" -cf - based4j/bin based4j/lib based4j/runtime | xz -T0 -6 > "$PACK.tmp" \
        && mv "$PACK.tmp" "$PACK" || { rm -f "$PACK.tmp"; die "packing $PACK failed"; }
    local bytes
    bytes=$(du -sb "$ROOT/devdata" | cut -f1)
    echo "packed $PACK ($(du -h "$PACK" | cut -f1)); devdata holds $(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB"
    [ "$bytes" -le $((64 * 1024 * 1024)) ] || die "devdata is over 64 MiB, more than a GPU call carries"
}

# the based4j command: $BASED4J, else bundle/based4j, else the packed bundle, else the repository's launcher
find_based4j() {
    if [ -n "${BASED4J:-}" ]; then
        B="$BASED4J"
    elif [ -x "$ROOT/bundle/based4j/bin/based4j" ]; then
        B="$ROOT/bundle/based4j/bin/based4j"
    elif [ -f "$PACK" ]; then
        mkdir -p "$W/bundle" && tar -C "$W/bundle" -xJf "$PACK" || die "cannot unpack $PACK"
        B="$W/bundle/based4j/bin/based4j"
    else
        B="$ROOT/based4j"
    fi
    say "based4j: $B"
}

# step NAME LOG LIMIT_S COMMAND...: runs one step under a time limit, its output in LOG, its outcome in steps.jsonl
step() {
    local name="$1" log="$2" limit="$3" t0 t1 rc
    shift 3
    say "$name: $*"
    t0=$(date +%s.%N)
    timeout -k 10 "$limit" "$@" > "$log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    printf '{"step": "%s", "rc": %d, "seconds": %s}\n' "$name" "$rc" "$secs" >> "$STEPS_FILE"
    if [ "$rc" -eq 0 ]; then
        say "$name: done in ${secs} s"
    else
        say "$name: FAILED (exit $rc after ${secs} s$([ "$rc" -eq 124 ] && echo ", over its ${limit} s")); last lines:"
        tail -n 5 "$log" | sed 's/^/    /' >&2
    fi
    snapshot
    return "$rc"
}

# what has been measured so far, into $OUT (each file renamed into place once whole); only in a run
snapshot() {
    [ "$MODE" = run ] || return 0
    python3 "$ROOT/scripts/lm-compare.py" "$R" "$OUT" >> "$OUT/run.log" 2>&1 || say "compare.json not written (see run.log)"
    tar -C "$W" -czf "$OUT/results.tar.gz.tmp" results && mv "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz"
}

# the charts: validation loss curves, perplexity and recall against state bytes, decode throughput
charts() {
    local results="$1" out="$2" logs="$3" runs=() benches=() m
    # a Java runtime without AWT (the bundle's) says so before it reads its input
    local probe
    probe=$("$B" plot bench --out "$logs/probe.png" "$logs/no-such-file.json" 2>&1)
    if grep -q java.desktop <<< "$probe"; then
        say "charts left out: this Java runtime cannot draw them; run 'scripts/lm-compare.sh report' on the results"
        return 0
    fi
    for m in "${MODELS[@]}"; do
        [ -s "$results/$m/metrics.jsonl" ] && runs+=("$results/$m")
        [ -s "$results/bench/$m.json" ] && benches+=("$results/bench/$m.json") # named by the file in the chart
    done
    [ ${#runs[@]} -gt 0 ] && step plot-loss "$logs/plot-loss.log" 120 "$B" plot metrics "${runs[@]}" --out "$out/loss.png" \
        --title "Training and validation loss, same tokens and schedule"
    [ -f "$out/compare.json" ] && step plot-state "$logs/plot-state.log" 120 "$B" plot compare "$out/compare.json" \
        --out "$out/state.png"
    [ ${#benches[@]} -gt 0 ] && step plot-decode "$logs/plot-decode.log" 120 "$B" plot bench "${benches[@]}" \
        --out "$out/decode.png" --title "Prefill and decode throughput"
    return 0
}

report() {
    local results="${2:-}" out="${3:-}"
    [ -n "$results" ] && [ -n "$out" ] || die "usage: scripts/lm-compare.sh report RESULTS_DIR OUT_DIR"
    [ -f "$results/run.json" ] || die "$results has no run.json (give the results folder of results.tar.gz)"
    mkdir -p "$out"
    W=$(mktemp -d)
    trap 'rm -rf "$W"' EXIT
    MODELS=($(python3 -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["models"]))' "$results/run.json"))
    B="${BASED4J:-$ROOT/based4j}" # the repository's launcher: the full JDK draws
    python3 "$ROOT/scripts/lm-compare.py" "$results" "$out" || die "lm-compare.py failed"
    mkdir -p "$W/logs"
    STEPS_FILE="$W/steps.jsonl" # the charts' steps: the results stay as they came
    charts "$results" "$out" "$W/logs"
    cat "$W"/logs/plot-*.log >&2 2>/dev/null
    python3 "$ROOT/scripts/lm-compare.py" "$results" "$out" || die "lm-compare.py failed"
    echo "wrote $out: $(cd "$out" && ls | tr '\n' ' ')"
}

run() {
    OUT="${OUT:-$ROOT/compare-out}"
    W="${COMPARE_WORK:-/tmp/lm-compare}"
    R="$W/results"
    STEPS_FILE="$R/steps.jsonl"
    mkdir -p "$OUT" || die "cannot make $OUT"
    rm -rf "$W" && mkdir -p "$R/logs" "$R/bench" "$W/models" || die "cannot make $W"
    : > "$OUT/run.log"
    exec 2> >(tee -a "$OUT/run.log" >&2)
    local tiny="${COMPARE_TINY:-}" dev=cuda
    [ -n "$tiny" ] && dev=cpu
    local steps="${STEPS:-$([ -n "$tiny" ] && echo 3 || echo 1000)}"
    local limit="${TRAIN_TIMEOUT:-240}"
    command -v python3 >/dev/null || die "python3 is needed to gather the results"
    local m
    for m in "${MODELS[@]}"; do
        [ -f "$ROOT/docs/compare/$m.yaml" ] || die "COMPARE_MODELS names '$m', but there is no docs/compare/$m.yaml"
    done
    [ -f "$ROOT/devdata/shards.tar.xz" ] || die "no devdata/shards.tar.xz (the tokenized corpus) under $ROOT"
    find_based4j
    say "unpacking the corpus"
    tar -C "$W" -xJf "$ROOT/devdata/shards.tar.xz" || die "cannot unpack devdata/shards.tar.xz"
    [ -f "$W/corpus-shards/data.json" ] || die "devdata/shards.tar.xz holds no corpus-shards/data.json"
    local val="$W/corpus-shards"
    if [ -n "$tiny" ]; then
        # the whole validation split takes minutes on a CPU: a small tokenized set goes the same way
        "$B" data tokenize --input "$HELDOUT" --val-fraction 0.5 --out "$W/tiny-val" >> "$OUT/run.log" 2>&1 \
            || die "cannot tokenize the small validation set"
        val="$W/tiny-val"
    fi
    local seq batch
    seq=$(sed -n 's/^  seq_len: *\([0-9]*\).*/\1/p' "$ROOT/docs/compare/${MODELS[0]}.yaml")
    batch=$(sed -n 's/^  batch_size: *\([0-9]*\).*/\1/p' "$ROOT/docs/compare/${MODELS[0]}.yaml")
    [ -n "$tiny" ] && batch=1
    python3 - "$R/run.json" "$dev" "$steps" "$batch" "$seq" "${MODELS[@]}" <<'EOF'
import json, sys
path, dev, steps, batch, seq, models = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6:]
json.dump({"device": dev, "steps": steps, "batch_size": batch, "seq_len": seq, "tokens_per_model": steps * batch * seq,
           "eval_seq_len": seq, "state_contexts": [512, 2048], "models": models}, open(path, "w"), indent=2)
EOF
    say "${#MODELS[@]} models, $steps updates of $batch x $seq tokens each, on $dev; results into $OUT"

    local ok=()
    for m in "${MODELS[@]}"; do
        mkdir -p "$R/$m"
        local cfg="$R/$m/train.yaml"
        sed -e "s#^  dir: .*#  dir: $W/corpus-shards#" -e "s#^  out: .*#  out: $W/runs/$m#" \
            -e "s#^  steps: .*#  steps: $steps#" "$ROOT/docs/compare/$m.yaml" > "$cfg"
        if [ -n "$tiny" ]; then
            sed -i -e "s#^  batch_size: .*#  batch_size: 1#" -e "s#^  log_interval: .*#  log_interval: 1#" \
                -e "s#^  warmup_steps: .*#  warmup_steps: 1#" -e "s#^  interval: 100#  interval: 1#" \
                -e "s#^  batches: .*#  batches: 1#" "$cfg"
        fi
        step "train-$m" "$R/logs/train-$m.log" "$limit" "$B" train --config "$cfg" --device "$dev"
        [ -f "$W/runs/$m/metrics.jsonl" ] && cp "$W/runs/$m/metrics.jsonl" "$R/$m/metrics.jsonl" && snapshot
        local last
        last=$(ls -d "$W/runs/$m/checkpoints/step-"* 2>/dev/null | tail -n 1)
        if [ -z "$last" ]; then
            say "$m: no checkpoint, so nothing more of it is measured"
            continue
        fi
        step "export-$m" "$R/logs/export-$m.log" 120 "$B" export --model "$last" --out "$W/models/$m" && ok+=("$m")
    done

    local eb=(--batch 64) # windows or prompts per pass on the GPU (the results do not depend on it)
    [ -n "$tiny" ] && eb=()
    for m in "${ok[@]}"; do
        local ctx
        for ctx in "${STATE_CONTEXTS[@]}"; do
            step "info-$m-$ctx" "$R/$m/info-$ctx.txt" 60 "$B" info --model "$W/models/$m" --context "$ctx"
        done
        step "ppl-val-$m" "$R/logs/ppl-val-$m.log" 180 "$B" eval --model "$W/models/$m" --device "$dev" \
            --task perplexity --data "$val" --seq-len "$seq" "${eb[@]}" --json "$R/$m/ppl-val.json"
        step "ppl-heldout-$m" "$R/logs/ppl-heldout-$m.log" 60 "$B" eval --model "$W/models/$m" --device "$dev" \
            --task perplexity --data "$HELDOUT" --seq-len "$seq" "${eb[@]}" --json "$R/$m/ppl-heldout.json"
    done
    for m in "${ok[@]}"; do
        if [ -n "$tiny" ]; then
            step "bench-$m" "$R/logs/bench-$m.log" 120 "$B" bench cpu --model "$W/models/$m" --batch 1,2 \
                --prompt-len 16 --decode-steps 4 --json "$R/bench/$m.json"
        else
            step "bench-$m" "$R/logs/bench-$m.log" 120 "$B" bench gpu --model "$W/models/$m" --batch 1,16,128 \
                --prompt-len 512,2048 --decode-steps 32 --json "$R/bench/$m.json"
        fi
    done
    for m in "${ok[@]}"; do
        local task
        for task in capitals elements; do
            step "$task-$m" "$R/logs/$task-$m.log" 180 "$B" eval --model "$W/models/$m" --device "$dev" \
                --task "$task" --seq-len "$seq" "${eb[@]}" --json "$R/$m/$task.json"
        done
    done
    charts "$R" "$OUT" "$R/logs"
    snapshot
    local failed
    failed=$(python3 -c 'import json, sys; print(", ".join(json.load(open(sys.argv[1]))["failed_steps"]) or "none")' \
        "$OUT/compare.json" 2>/dev/null) || failed="unknown: no compare.json (see run.log)"
    say "finished in $SECONDS s; failed steps: $failed"
    cat "$OUT/compare.md" >&2
    ls -la "$OUT" >&2
}

case "$MODE" in
    pack) pack "$@" ;;
    run) run ;;
    report) report "$@" ;;
    *) echo "usage: scripts/lm-compare.sh [run] | pack [maven options] | report RESULTS_DIR OUT_DIR" >&2; exit 2 ;;
esac
