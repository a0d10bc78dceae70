# ctypes call of llama.cpp's llama_model_quantize (the libllama.so llama-cpp-python builds).
import ctypes, sys
lib = ctypes.CDLL("/tmp/llamalib/libllama.so")
class P(ctypes.Structure):
    _fields_ = [("nthread", ctypes.c_int32), ("ftype", ctypes.c_int), ("output_tensor_type", ctypes.c_int),
                ("token_embedding_type", ctypes.c_int), ("allow_requantize", ctypes.c_bool),
                ("quantize_output_tensor", ctypes.c_bool), ("only_copy", ctypes.c_bool), ("pure", ctypes.c_bool),
                ("keep_split", ctypes.c_bool), ("dry_run", ctypes.c_bool), ("imatrix", ctypes.c_void_p),
                ("kv_overrides", ctypes.c_void_p), ("tt_overrides", ctypes.c_void_p), ("prune_layers", ctypes.c_void_p),
                ("max_buf_size", ctypes.c_size_t)]
lib.llama_model_quantize_default_params.restype = P
lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(P)]
lib.llama_model_quantize.restype = ctypes.c_uint32
lib.llama_backend_init()
F = {"Q4_K_S": 14, "Q3_K_M": 12, "Q3_K_S": 11, "Q2_K": 10}
p = lib.llama_model_quantize_default_params()
p.ftype = F[sys.argv[3]]; p.allow_requantize = True; p.nthread = 2
rc = lib.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p))
sys.exit(rc)
