#!/usr/bin/env bash
# Feeds N seeded pseudo-random inputs (default 100000) to both C decoders
# under ASan/UBSan (tests/fuzz/fuzz_fec.c, standalone driver).  For longer,
# coverage-guided runs build the same file with clang -fsanitize=fuzzer
# (command in its header).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-100000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -std=c99 -D_GNU_SOURCE -DCK_FUZZ_STANDALONE -g -O1 -fsanitize=address,undefined \
    -fno-sanitize-recover=all -Wall -Wextra -Werror -Icsrc tests/fuzz/fuzz_fec.c csrc/ck_*.c \
    -lpthread -o "$tmp/fuzz_fec"
"$tmp/fuzz_fec" "$runs"
