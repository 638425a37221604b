//! The Python package (python/): the extension module built by cargo
//! (`lib_infer.so`, built here when missing) is staged with
//! python/infer/*.py as a package in a temporary folder, and
//! python/tests/test_infer.py runs under pytest in the project's .venv
//! against SmolLM2 and MiniLM.

use std::path::PathBuf;
use std::process::Command;

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent().and_then(|deps| deps.parent()).expect("target/release").to_path_buf()
}

fn extension_module() -> PathBuf {
    let lib = profile_dir().join("lib_infer.so");
    if !lib.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo).args(["build", "--release", "-p", "infer-python"]).status().expect("running cargo build");
        assert!(status.success(), "cargo build -p infer-python failed");
    }
    assert!(lib.exists(), "{} missing after building infer-python", lib.display());
    lib
}

#[test]
fn the_python_package_under_pytest() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(python.is_file(), "{} missing: run scripts/test.sh (it creates .venv with pytest)", python.display());
    let stage = std::env::temp_dir().join(format!("infer-python-{}", std::process::id()));
    let package = stage.join("infer");
    std::fs::create_dir_all(&package).expect("the staging folder");
    for f in ["__init__.py", "_infer.pyi", "py.typed"] {
        std::fs::copy(root.join("python/infer").join(f), package.join(f)).expect("staging the package");
    }
    std::fs::copy(extension_module(), package.join("_infer.abi3.so")).expect("staging the extension module");
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("python/tests"))
        .env("PYTHONPATH", &stage)
        .env("INFER_MODELS", root.join("models"))
        .env("INFER_TEST_DATA", root.join("tests/data"))
        .output()
        .expect("running pytest");
    let _ = std::fs::remove_dir_all(&stage);
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(out.status.success(), "pytest failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" passed") && !stdout.contains("failed"), "{stdout}");
}
