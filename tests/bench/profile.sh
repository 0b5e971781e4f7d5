#!/bin/sh
# profile.sh CONFIG [SECONDS [THREADS]]
#
# Where one `make bench` configuration spends its time, from oneDNN's own execution log
# (ONEDNN_VERBOSE=1 prints one line per primitive call with its time in ms): the time per
# primitive kind and pass, the slowest primitives with their shapes and GFLOP/s, and the share of
# the wall time spent outside oneDNN (the framework's own loops: batchnorm R-operator, ReLU masks,
# SGD/Adam, episode sampling, reductions). Verbose logging itself slows every call a little, so
# read the shares, not the absolute rates. Run from the repository root after `make bench` built
# build/bench/bench. Example: sh tests/bench/profile.sh maml_omniglot_so 4 1
set -u
if [ $# -lt 1 ]; then
    echo "usage: sh tests/bench/profile.sh CONFIG [SECONDS [THREADS]]" >&2
    exit 2
fi
config=$1
seconds=${2:-4}
threads=${3:-1}
bin=${BENCH_BIN:-build/bench/bench}
[ -x "$bin" ] || { echo "profile: $bin not built; run make build/bench/bench" >&2; exit 1; }
log=$(mktemp /tmp/metagan_profile.XXXXXX)
trap 'rm -f "$log"' EXIT

ONEDNN_VERBOSE=1 "$bin" run "$config" "$seconds" "$threads" >"$log" 2>&1 || {
    echo "profile: $bin run $config failed:" >&2
    grep -v '^onednn_verbose' "$log" >&2
    exit 1
}
grep -v '^onednn_verbose' "$log"
# The timed loop's wall time (warm-up and windows), printed by the bench child.
loop=$(awk '$1 == "loop" { print $4 }' "$log")

# Fields of an exec line: onednn_verbose,exec,cpu,<primitive>,<impl>,<pass>,<mds>,<attrs>,
# <aux>,<shape>,<ms>. Conv FLOPs are computed from the shape string
# (mb, ic, oc, oh, ow, kh, kw).
awk -F, -v loop="$loop" '
function conv_flops(s,   mb, ic, oc, oh, ow, kh, kw) {
    mb = s; sub(/^mb/, "", mb); sub(/_.*/, "", mb)
    ic = s; sub(/.*ic/, "", ic); sub(/oc.*/, "", ic)
    oc = s; sub(/.*oc/, "", oc); sub(/_.*/, "", oc)
    oh = s; sub(/.*oh/, "", oh); sub(/kh.*/, "", oh)
    ow = s; sub(/.*ow/, "", ow); sub(/kw.*/, "", ow)
    kh = s; sub(/.*kh/, "", kh); sub(/sh.*/, "", kh)
    kw = s; sub(/.*kw/, "", kw); sub(/sw.*/, "", kw)
    return 2 * mb * ic * oc * oh * ow * kh * kw
}
$1 == "onednn_verbose" && $2 == "exec" {
    ms = $NF; total += ms; calls++
    kind = $4 " " $6; t[kind] += ms; n[kind]++
    if ($4 == "convolution") {
        key = $6 " " $(NF-1); ct[key] += ms; cn[key]++; cf[key] = conv_flops($(NF-1))
    }
}
END {
    printf "\noneDNN primitives: %d calls, %.0f ms of the %.0f ms meta-iteration loop (%.0f%%); " \
           "the rest is the framework'"'"'s own code\n", calls, total, loop * 1000, 100 * total / (loop * 1000)
    printf "%-48s %9s %7s %8s %9s\n", "primitive pass", "ms", "share", "calls", "us/call"
    for (k in t) printf "%-48s %9.1f %6.1f%% %8d %9.1f\n", k, t[k], 100 * t[k] / total, n[k], 1000 * t[k] / n[k] | "sort -k3,3 -rn"
    close("sort -k3,3 -rn")
    printf "\nconvolutions by shape (GFLOP/s of the primitive alone):\n"
    for (k in ct) printf "%9.1f ms %7d calls %7.1f us/call %6.1f GFLOP/s  %s\n", ct[k], cn[k], 1000 * ct[k] / cn[k], cf[k] * cn[k] / (ct[k] * 1e6), k | "sort -rn"
}' "$log"
