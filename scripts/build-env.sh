# Build settings for llama-cpp-python's source build; source it before `pip install`:
#   . scripts/build-env.sh && pip install -e '.[llamacpp]'
#
# On x86-64, llama.cpp's AMX kernels are left out of the build. Some virtual machines (seen on
# Sapphire Rapids guests) report AMX in cpuid, and the kernel grants the tile permission, yet the
# first tile load in a worker thread faults: the server dies with SIGILL on its first prompt.
# The kernels it keeps (AVX-512, AVX2) are chosen for the machine as usual (-march=native).
if [ "$(uname -m)" = "x86_64" ]; then
    _llmserver_no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    export CMAKE_ARGS="${CMAKE_ARGS:+$CMAKE_ARGS }-DCMAKE_C_FLAGS='$_llmserver_no_amx' -DCMAKE_CXX_FLAGS='$_llmserver_no_amx'"
    unset _llmserver_no_amx
fi
