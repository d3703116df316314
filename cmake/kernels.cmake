# CPU kernels live in src/backend/cpu/kern/. A file's suffix names its ISA and gets that
# ISA's flags; the dispatcher (kern_dispatch.c) picks one at run time with cpuid, so one
# binary runs on AVX2-only and AVX-512 x86. On aarch64 only generic + NEON files build.
file(GLOB PL_KERN_GENERIC src/backend/cpu/kern/*.c)
file(GLOB PL_KERN_AVX2 src/backend/cpu/kern/*_avx2.c)
file(GLOB PL_KERN_AVX512 src/backend/cpu/kern/*_avx512.c)
file(GLOB PL_KERN_NEON src/backend/cpu/kern/*_neon.c)
list(REMOVE_ITEM PL_KERN_GENERIC ${PL_KERN_AVX2} ${PL_KERN_AVX512} ${PL_KERN_NEON} "")
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  set_source_files_properties(${PL_KERN_AVX2} PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
  set_source_files_properties(${PL_KERN_AVX512} PROPERTIES COMPILE_OPTIONS
    "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx2;-mfma;-mf16c")
  if(PL_FUZZ)
    # clang ignores the file's `#pragma GCC target("avx512vnni")` / ("avx512bf16"); the
    # fuzz build (never shipped) enables them for the whole AVX-512 file instead.
    set_property(SOURCE ${PL_KERN_AVX512} APPEND PROPERTY COMPILE_OPTIONS "-mavx512vnni;-mavx512bf16")
    # clang 14 with ASan, UBSan and coverage spent over 10 min optimizing the VNNI kernels of
    # kern_avx512.c (24 s at -O0); no fuzz target runs a matmul, so they are built at -O0 here.
    set_property(SOURCE ${PL_KERN_AVX512} APPEND PROPERTY COMPILE_OPTIONS "-O0")
  endif()
  set(PL_KERNEL_SRC ${PL_KERN_GENERIC} ${PL_KERN_AVX2} ${PL_KERN_AVX512})
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(PL_KERNEL_SRC ${PL_KERN_GENERIC} ${PL_KERN_NEON})
else()
  set(PL_KERNEL_SRC ${PL_KERN_GENERIC})
endif()
# The kernel-only build (PL_NEON_ONLY) has no src/backend glob; the kernels need the dtype
# tables of tensor.c.
if(PL_NEON_ONLY)
  list(APPEND PL_KERNEL_SRC ${CMAKE_SOURCE_DIR}/src/backend/tensor.c)
endif()
# Tests that need the full library (OpenBLAS, gemm.c) skip themselves in that build.
if(PL_NEON_ONLY)
  add_compile_definitions(PL_KERNELS_ONLY=1)
endif()
