//! Compiling the kernel sources to PTX with NVRTC for a GPU architecture, cached on disk by (source
//! hash, architecture, NVRTC version). Needs no GPU: `loupe kernels compile --arch sm_90` runs anywhere
//! NVRTC's library loads.

use std::path::{Path, PathBuf};

use cudarc::nvrtc::{CompileError, CompileOptions, compile_ptx_with_opts};

use super::sources::KernelSource;

/// The architectures loupe compiles for (NVRTC needs a `'static` name).
const ARCHES: &[&str] = &[
    "sm_80", "sm_86", "sm_87", "sm_89", "sm_90", "sm_90a", "sm_100", "sm_120",
];

/// One source compiled for one architecture.
#[derive(Debug, Clone)]
pub struct CompiledKernel {
    pub name: &'static str,
    pub arch: &'static str,
    pub ptx: String,
    /// Read from the cache rather than compiled now.
    pub cached: bool,
}

fn missing_nvrtc() -> String {
    "NVRTC (libnvrtc.so.13) could not be loaded: install it (`pip install nvidia-cuda-nvrtc==13.0.*`) and add its lib directory (site-packages/nvidia/cu13/lib) to LD_LIBRARY_PATH".into()
}

/// NVRTC's version, or why it cannot be loaded.
pub fn nvrtc_version() -> Result<(i32, i32), String> {
    // SAFETY: only tries to open the library by its candidate names; cudarc panics on a missing one.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(missing_nvrtc());
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present, and both pointers are valid for the call.
    let status = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if status != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(format!("nvrtcVersion failed: {status:?}"));
    }
    Ok((major, minor))
}

/// `arch` if loupe compiles for it, else an error listing the ones it does.
pub fn check_arch(arch: &str) -> Result<&'static str, String> {
    ARCHES.iter().find(|&&a| a == arch).copied().ok_or_else(|| {
        format!(
            "unknown architecture `{arch}`; use one of {}",
            ARCHES.join(", ")
        )
    })
}

/// FNV-1a, 64 bits: a cache key that stays the same across builds and Rust versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn cache_path(dir: &Path, source: &KernelSource, arch: &str, version: (i32, i32)) -> PathBuf {
    dir.join(format!(
        "{}-{arch}-nvrtc{}.{}-{:016x}.ptx",
        source.name,
        version.0,
        version.1,
        fnv1a(source.code.as_bytes())
    ))
}

/// Compiles `source` for `arch` (`sm_80`, `sm_90`, ...), or reads it from `cache` when it was compiled
/// before by the same NVRTC. A compile error gives NVRTC's log.
pub fn compile(
    source: &KernelSource,
    arch: &str,
    cache: Option<&Path>,
) -> Result<CompiledKernel, String> {
    let arch = check_arch(arch)?;
    let version = nvrtc_version()?;
    let path = cache.map(|dir| cache_path(dir, source, arch, version));
    if let Some(ptx) = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
        return Ok(CompiledKernel {
            name: source.name,
            arch,
            ptx,
            cached: true,
        });
    }
    let options = CompileOptions {
        arch: Some(arch),
        name: Some(format!("{}.cu", source.name)),
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(source.code, options)
        .map_err(|e| describe(source.name, arch, e))?
        .to_src();
    if let Some(path) = &path {
        write_atomically(path, &ptx);
    }
    Ok(CompiledKernel {
        name: source.name,
        arch,
        ptx,
        cached: false,
    })
}

fn describe(name: &str, arch: &str, e: CompileError) -> String {
    match e {
        CompileError::CompileError { log, .. } => format!(
            "{name}.cu does not compile for {arch}:\n{}",
            log.to_string_lossy().trim_end()
        ),
        other => format!("{name}.cu for {arch}: NVRTC failed: {other:?}"),
    }
}

/// A failed cache write only costs a recompile next time, so it is not an error.
fn write_atomically(path: &Path, text: &str) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::SOURCES;

    #[test]
    fn cache_keys_change_with_the_source_and_the_compiler() {
        let dir = Path::new("/cache");
        let a = KernelSource {
            name: "k",
            code: "__global__ void f() {}",
        };
        let b = KernelSource {
            name: "k",
            code: "__global__ void g() {}",
        };
        assert_ne!(
            cache_path(dir, &a, "sm_90", (13, 0)),
            cache_path(dir, &b, "sm_90", (13, 0))
        );
        assert_ne!(
            cache_path(dir, &a, "sm_90", (13, 0)),
            cache_path(dir, &a, "sm_80", (13, 0))
        );
        assert_ne!(
            cache_path(dir, &a, "sm_90", (13, 0)),
            cache_path(dir, &a, "sm_90", (13, 1))
        );
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn unknown_architectures_are_refused_by_name() {
        let e = compile(&SOURCES[0], "sm_42", None).unwrap_err();
        assert!(
            e.contains("unknown architecture `sm_42`") && e.contains("sm_90"),
            "{e}"
        );
    }

    /// Compiles every source for sm_80 and sm_90 when NVRTC loads; says it was skipped otherwise.
    #[test]
    fn every_kernel_compiles_for_sm80_and_sm90_when_nvrtc_is_present() {
        if let Err(why) = nvrtc_version() {
            eprintln!("skipped: {why}");
            return;
        }
        for source in SOURCES {
            for arch in ["sm_80", "sm_90"] {
                let k = compile(source, arch, None).unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    k.ptx.contains(".entry"),
                    "{} for {arch}: no kernel entry in the PTX",
                    k.name
                );
            }
        }
    }
}
