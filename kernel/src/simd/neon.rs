//! aarch64 NEON variants (none yet: aarch64 uses the scalar reference, which LLVM
//! auto-vectorizes without changing results).
