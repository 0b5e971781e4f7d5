#!/bin/sh
# fetch_mnist.sh MIRROR_DIR DEST_DIR
#
# Puts the four decompressed MNIST IDX files into DEST_DIR. Each .gz comes from
# MIRROR_DIR/mnist/ when it is there, else from the network. Both the .gz and the decompressed
# file must match the official sha256; files are written under temporary names and only moved
# into place once verified, so DEST_DIR never holds a partial or unverified file.
# Files already in DEST_DIR with the right checksum are left alone.
set -u

if [ $# -ne 2 ]; then
    echo "usage: sh datasets/fetch_mnist.sh MIRROR_DIR DEST_DIR" >&2
    exit 2
fi
mirror=$1
dest=$2

URLS="https://ossci-datasets.s3.amazonaws.com/mnist http://yann.lecun.com/exdb/mnist"

# name  sha256 of name.gz  sha256 of the decompressed name
FILES="
train-images-idx3-ubyte 440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609 ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
train-labels-idx1-ubyte 3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
t10k-images-idx3-ubyte 8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
t10k-labels-idx1-ubyte f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6 ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
"

die() {
    echo "mnist: error: $*" >&2
    exit 1
}

mkdir -p "$dest" || die "cannot create $dest"

# Temporary names are hidden and carry the pid, so a crashed run never looks like data.
tmp_gz="$dest/.fetch_mnist.$$.gz"
tmp_raw="$dest/.fetch_mnist.$$.raw"
trap 'rm -f "$tmp_gz" "$tmp_raw"' EXIT
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

# download URL FILE: curl or wget, whichever exists.
download() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 2 --connect-timeout 20 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -T 20 -t 3 -O "$2" "$1"
    else
        echo "mnist: error: neither curl nor wget is installed" >&2
        return 1
    fi
}

# verify FILE EXPECTED LABEL: prints the mismatch and fails when the sha256 differs.
verify() {
    actual=$(sha256_of "$1")
    if [ "$actual" != "$2" ]; then
        echo "mnist: error: checksum mismatch for $3" >&2
        echo "mnist:   expected sha256 $2" >&2
        echo "mnist:   actual   sha256 $actual" >&2
        return 1
    fi
}

# fetch NAME GZ_SUM RAW_SUM: verified NAME.gz -> verified DEST/NAME.
fetch() {
    name=$1
    if [ -f "$mirror/mnist/$name.gz" ]; then
        src="$mirror/mnist/$name.gz"
        echo "mnist: $name.gz from $src"
    else
        echo "mnist: no mirror copy at $mirror/mnist/$name.gz (set DATA_MIRROR=<folder with mnist/>); downloading"
        src=$tmp_gz
        ok=1
        for base in $URLS; do
            echo "mnist: downloading $base/$name.gz"
            if download "$base/$name.gz" "$tmp_gz"; then
                ok=0
                break
            fi
            echo "mnist: download from $base failed" >&2
        done
        [ $ok = 0 ] || { echo "mnist: error: could not download $name.gz" >&2; return 1; }
    fi
    verify "$src" "$2" "$src" || return 1
    gzip -dc "$src" >"$tmp_raw" || { echo "mnist: error: cannot decompress $src" >&2; return 1; }
    verify "$tmp_raw" "$3" "$name (decompressed from $src)" || return 1
    mv -f "$tmp_raw" "$dest/$name" || return 1
    rm -f "$tmp_gz"
}

fetched=0
failed=""
# A here-doc, not a pipe: the loop must run in this shell to update the counters.
while read -r name gz_sum raw_sum; do
    [ -n "$name" ] || continue
    out="$dest/$name"
    if [ -f "$out" ] && [ "$(sha256_of "$out")" = "$raw_sum" ]; then
        continue
    fi
    if [ -e "$out" ]; then
        # A stale or damaged copy must not survive a failed refetch.
        echo "mnist: $out has the wrong checksum, fetching it again"
        rm -f "$out"
    fi
    fetched=$((fetched + 1))
    if ! fetch "$name" "$gz_sum" "$raw_sum"; then
        failed="$failed $name"
        rm -f "$tmp_gz" "$tmp_raw"
    fi
done <<EOF
$FILES
EOF

if [ -n "$failed" ]; then
    die "failed:$failed (nothing was written for them in $dest). Without network access, point DATA_MIRROR at a folder holding mnist/<the four .gz files>, e.g. make deps DATA_MIRROR=/path/to/shared/datasets"
fi
if [ "$fetched" = 0 ]; then
    echo "mnist: up to date"
else
    echo "mnist: ready in $dest"
fi
