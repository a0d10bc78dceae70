#!/usr/bin/env python3
"""Requantize a GGUF with llama.cpp's own quantizer, llama_model_quantize (allow_requantize,
no importance matrix): the baseline `tqlm convert` is measured against (docs/RESULTS.md,
"TurboQuant weights").

    PY scripts/llamacpp_requant.py IN.gguf OUT.gguf {Q4_K_S,Q3_K_M,Q3_K_S,Q2_K}

It calls the function in the libllama.so that llama-cpp-python builds (pip install
llama-cpp-python==0.3.36 builds llama.cpp from source: about 40 minutes on this 2-core
machine), found through the installed llama_cpp package or LIBLLAMA=/path/to/libllama.so; the
struct below is llama.h's llama_model_quantize_params of that version.
"""
import ctypes
import os
import sys

FTYPES = {"Q4_K_S": 14, "Q3_K_M": 12, "Q3_K_S": 11, "Q2_K": 10}  # enum llama_ftype


class QuantizeParams(ctypes.Structure):
    _fields_ = [("nthread", ctypes.c_int32), ("ftype", ctypes.c_int),
                ("output_tensor_type", ctypes.c_int), ("token_embedding_type", ctypes.c_int),
                ("allow_requantize", ctypes.c_bool), ("quantize_output_tensor", ctypes.c_bool),
                ("only_copy", ctypes.c_bool), ("pure", ctypes.c_bool),
                ("keep_split", ctypes.c_bool), ("dry_run", ctypes.c_bool),
                ("imatrix", ctypes.c_void_p), ("kv_overrides", ctypes.c_void_p),
                ("tt_overrides", ctypes.c_void_p), ("prune_layers", ctypes.c_void_p),
                ("max_buf_size", ctypes.c_size_t)]


def libllama():
    path = os.environ.get("LIBLLAMA")
    if not path:
        import llama_cpp  # the package ships the library next to itself
        path = os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libllama.so")
    lib = ctypes.CDLL(path)
    lib.llama_model_quantize_default_params.restype = QuantizeParams
    lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p,
                                         ctypes.POINTER(QuantizeParams)]
    lib.llama_model_quantize.restype = ctypes.c_uint32
    return lib


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in FTYPES:
        sys.exit(f"usage: {sys.argv[0]} IN.gguf OUT.gguf {{{','.join(FTYPES)}}}")
    src, dst, name = sys.argv[1:]
    lib = libllama()
    lib.llama_backend_init()
    params = lib.llama_model_quantize_default_params()
    params.ftype = FTYPES[name]
    params.allow_requantize = True
    params.nthread = int(os.environ.get("THREADS", "2"))
    rc = lib.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed: {rc}")


if __name__ == "__main__":
    main()
