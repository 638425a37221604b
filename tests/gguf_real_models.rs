//! The GGUF reader on the two real models.
use infer_gguf::{Gguf, QuantType};

#[test]
fn smollm2_parses() {
    let g = Gguf::open("models/SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
    assert_eq!(g.tensors().len(), 272);
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(g.arch_u32("block_count").unwrap(), 30);
    let t = g.tensor("token_embd.weight").unwrap();
    assert_eq!(t.ty(), QuantType::Q8_0);
    assert_eq!(t.dims(), &[576, 49152]);
}
