"""Imports llama-cpp-python with one workaround: llama.cpp's AMX weight buffers crash on this
machine's CPU (segfault in ggml_backend_amx_mul_mat), so models load without extra buffer
types (no AMX, no weight repacking); every other CPU path (AVX-512, VNNI) stays on."""
from llama_cpp import llama_cpp as _lc
import llama_cpp.llama as _llama_mod

_default_params = _lc.llama_model_default_params


def _params_without_extra_bufts():
    p = _default_params()
    p.use_extra_bufts = False
    return p


_lc.llama_model_default_params = _params_without_extra_bufts
_llama_mod.llama_cpp.llama_model_default_params = _params_without_extra_bufts

from llama_cpp import Llama, __version__  # noqa: E402,F401
