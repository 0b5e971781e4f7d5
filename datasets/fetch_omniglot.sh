#!/bin/sh
# fetch_omniglot.sh MIRROR_DIR DEST_DIR
#
# Puts Omniglot into DEST_DIR: the two image files decompressed (omniglot_background.bin,
# omniglot_evaluation.bin), omniglot_characters.tsv and the Vinyals split lists
# (splits-vinyals/{train,val,test,trainval}.txt). Everything comes from MIRROR_DIR/omniglot/,
# whose README documents the format and its provenance; the checksums below are those of its
# SHA256SUMS (and, for the decompressed files, of its README). Each file must match before it is
# moved into place under its final name, so DEST_DIR never holds a partial or unverified file.
# Files already in DEST_DIR with the right checksum are left alone.
#
# There is no download fallback: this lossless binary form of Omniglot exists only in the mirror
# (the official release is two zips of 32,460 PNGs). Point DATA_MIRROR at a copy of it.
set -u

if [ $# -ne 2 ]; then
    echo "usage: sh datasets/fetch_omniglot.sh MIRROR_DIR DEST_DIR" >&2
    exit 2
fi
src_dir=$1/omniglot
dest=$2

# destination name  mirror name  sha256 of the mirror file  sha256 of the destination file
# (equal unless the mirror file is gzip-compressed)
FILES="
omniglot_background.bin omniglot_background.bin.gz e304b012d9db2461cad7947ac8e5aee65e9d216c79fb02e0a0e4e4b8acd24fec 372bbf6dce69d0f29316c4e7fbfa5ee872382a69226db1b307ec2c1c7beed055
omniglot_evaluation.bin omniglot_evaluation.bin.gz 8afc5e185cf74c4a1ca2e06ef7786a1e075f45f1240f3f5d5627621308c53f83 a02dee69ef06b99941425489b3a0435026214432faf97ee7831ac3f023441bcb
omniglot_characters.tsv omniglot_characters.tsv 63225bbada0609148305e775d7279a5b0125597308be00491f522fee4f232206 63225bbada0609148305e775d7279a5b0125597308be00491f522fee4f232206
splits-vinyals/test.txt splits-vinyals/test.txt 845264cc5c156180828ccf17915668b17ee21424d0170df6e7d81676aa5d1204 845264cc5c156180828ccf17915668b17ee21424d0170df6e7d81676aa5d1204
splits-vinyals/train.txt splits-vinyals/train.txt 984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0 984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0
splits-vinyals/trainval.txt splits-vinyals/trainval.txt 5276ae50c755596d0bff7f2284e85625695549a85ee6e36b6491ad1e5d1cc26a 5276ae50c755596d0bff7f2284e85625695549a85ee6e36b6491ad1e5d1cc26a
splits-vinyals/val.txt splits-vinyals/val.txt 11f99e54faee3e26f53d3231c1cceac5bf7b8730e9be31cb6dab256551dc0c1a 11f99e54faee3e26f53d3231c1cceac5bf7b8730e9be31cb6dab256551dc0c1a
"

die() {
    echo "omniglot: error: $*" >&2
    exit 1
}

mkdir -p "$dest/splits-vinyals" || die "cannot create $dest"

# Temporary names are hidden and carry the pid, so a crashed run never looks like data.
tmp="$dest/.fetch_omniglot.$$"
trap 'rm -f "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d' ' -f1
    else
        openssl dgst -sha256 "$1" | sed 's/.*= *//'
    fi
}

# verify FILE EXPECTED LABEL: prints the mismatch and fails when the sha256 differs.
verify() {
    actual=$(sha256_of "$1")
    if [ "$actual" != "$2" ]; then
        echo "omniglot: error: checksum mismatch for $3" >&2
        echo "omniglot:   expected sha256 $2" >&2
        echo "omniglot:   actual   sha256 $actual" >&2
        return 1
    fi
}

# fetch NAME SRC SRC_SUM OUT_SUM: verified mirror file -> verified DEST/NAME.
fetch() {
    src="$src_dir/$2"
    [ -f "$src" ] || {
        echo "omniglot: error: $src not found; Omniglot comes only from the data mirror" \
             "(set DATA_MIRROR to a folder holding omniglot/, see datasets/README there)" >&2
        return 1
    }
    echo "omniglot: $1 from $src"
    verify "$src" "$3" "$src" || return 1
    case "$2" in
        *.gz) gzip -dc "$src" >"$tmp" || { echo "omniglot: error: cannot decompress $src" >&2; return 1; } ;;
        *) cat "$src" >"$tmp" || { echo "omniglot: error: cannot copy $src" >&2; return 1; } ;;
    esac
    verify "$tmp" "$4" "$1 (from $src)" || return 1
    mv -f "$tmp" "$dest/$1" || return 1
}

fetched=0
failed=""
# A here-doc, not a pipe: the loop must run in this shell to update the counters.
while read -r name src src_sum out_sum; do
    [ -n "$name" ] || continue
    out="$dest/$name"
    if [ -f "$out" ] && [ "$(sha256_of "$out")" = "$out_sum" ]; then
        continue
    fi
    if [ -e "$out" ]; then
        # A stale or damaged copy must not survive a failed refetch.
        echo "omniglot: $out has the wrong checksum, fetching it again"
        rm -f "$out"
    fi
    fetched=$((fetched + 1))
    if ! fetch "$name" "$src" "$src_sum" "$out_sum"; then
        failed="$failed $name"
        rm -f "$tmp"
    fi
done <<EOF
$FILES
EOF

if [ -n "$failed" ]; then
    die "failed:$failed (nothing was written for them in $dest)"
fi
if [ "$fetched" = 0 ]; then
    echo "omniglot: up to date"
else
    echo "omniglot: ready in $dest"
fi
