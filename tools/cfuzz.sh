#!/usr/bin/env bash
# Feeds N seeded pseudo-random inputs (default 100000) to each C fuzz target
# under ASan/UBSan (standalone drivers):
#   tests/fuzz/fuzz_fec.c      both FEC decoders (ck_rs, ck_rsc);
#   tests/fuzz/fuzz_payload.c  the signal payload decoder (ck_payload);
#   tests/fuzz/fuzz_consensus.c  the consensus filter and reputation (ck_consensus).
# For longer, coverage-guided runs build the same files with clang
# -fsanitize=fuzzer (commands in their headers).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-100000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags=(-std=c99 -D_GNU_SOURCE -DCK_FUZZ_STANDALONE -g -O1 -fsanitize=address,undefined
    -fno-sanitize-recover=all -Wall -Wextra -Werror -Icsrc)
gcc "${flags[@]}" tests/fuzz/fuzz_fec.c csrc/ck_*.c -lpthread -lm -o "$tmp/fuzz_fec"
gcc "${flags[@]}" tests/fuzz/fuzz_payload.c csrc/ck_*.c -lpthread -lm -o "$tmp/fuzz_payload"
gcc "${flags[@]}" tests/fuzz/fuzz_consensus.c csrc/ck_*.c -lpthread -lm -o "$tmp/fuzz_consensus"
"$tmp/fuzz_fec" "$runs"
"$tmp/fuzz_payload" "$runs"
"$tmp/fuzz_consensus" "$runs"
