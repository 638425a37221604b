//! Writes every target's seeds to `fuzz/corpus/<target>/seed-NNN` (git-ignored; those up
//! to 64 KiB: the bigger ones, such as the 100k-value enum, stay in the
//! bounded test). `scripts/fuzz.sh` runs it before cargo-fuzz.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for t in infer_fuzz_targets::TARGETS {
        let dir = root.join(t.name);
        std::fs::create_dir_all(&dir)?;
        let mut n = 0;
        for (i, seed) in (t.seeds)().iter().enumerate().filter(|(_, s)| s.len() <= 64 << 10) {
            std::fs::write(dir.join(format!("seed-{i:03}")), seed)?;
            n += 1;
        }
        println!("{}: {n} seeds in {}", t.name, dir.display());
    }
    Ok(())
}
