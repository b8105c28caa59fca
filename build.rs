//! Compiles every kernel-side program `src/bpf/<prog>.bpf.c` into `OUT_DIR/<prog>.skel.rs`.
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let vmlinux = Path::new("vmlinux").join(&arch);
    if !vmlinux.join("vmlinux.h").exists() {
        panic!("no vmlinux/{arch}/vmlinux.h: see vmlinux/README.md to generate it");
    }

    println!("cargo:rerun-if-changed=src/bpf");
    println!("cargo:rerun-if-changed=vmlinux");
    let mut sources: Vec<PathBuf> = fs::read_dir("src/bpf")
        .expect("src/bpf exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    sources.sort();
    for path in &sources {
        // Every header and source under src/bpf reruns the build when it changes.
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for src in sources
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
    {
        let file = src.file_name().expect("a file name").to_string_lossy();
        let prog = file.trim_end_matches(".bpf.c");
        SkeletonBuilder::new()
            .source(src)
            .clang_args([
                "-Wall".as_ref(),
                "-Werror".as_ref(),
                "-Isrc/bpf".as_ref(),
                "-I".as_ref(),
                vmlinux.as_os_str(),
            ])
            .build_and_generate(out.join(format!("{prog}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
    }
}
