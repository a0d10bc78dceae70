#!/usr/bin/env python3
"""Requantize a GGUF with llama.cpp's own quantizer (llama_model_quantize through
llama-cpp-python, allow_requantize, no importance matrix): the baseline `tqlm convert` is
measured against (docs/RESULTS.md, "TurboQuant weights").

    ~/.cache/tqlm/venv-llamacpp/bin/python scripts/llamacpp_requant.py IN.gguf OUT.gguf Q3_K_M
"""
import ctypes
import os
import sys

import llama_cpp

FTYPES = {
    "Q4_K_S": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_S,
    "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
    "Q3_K_L": llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_L,
    "Q3_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_M,
    "Q3_K_S": llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_S,
    "Q2_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q2_K,
}


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in FTYPES:
        sys.exit(f"usage: {sys.argv[0]} IN.gguf OUT.gguf {{{','.join(FTYPES)}}}")
    src, dst, name = sys.argv[1:]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[name]
    params.allow_requantize = True
    params.nthread = int(os.environ.get("THREADS", "2"))
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed: {rc}")


if __name__ == "__main__":
    main()
