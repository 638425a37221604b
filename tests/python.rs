//! The Python package (python/): the extension module built by cargo
//! (`lib_infer.so`, built here when missing) is staged with
//! python/infer/*.py as a package in a temporary folder, and
//! python/tests/test_infer.py runs under pytest in the project's .venv
//! against SmolLM2 and MiniLM.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::built_artifact;

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
    std::fs::copy(built_artifact("lib_infer.so", "infer-python"), package.join("_infer.abi3.so")).expect("staging the extension module");
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
